// The full-precision vectors of an int8 index, on disk rather than in the heap: one file of f32 rows,
// read with pread to rescore a search's best candidates and to return stored vectors.
//
// The file only grows, one row per write, and a label's row is found through the slot table (label ->
// row). A snapshot saves the slot table; rows it names are never written again, so a crash after it leaves
// them whole. Rows past them that no snapshot names (written before a crash, or by another process reading
// the same collection, which appends to the same file) are dead: nothing reads them, and a compaction
// (Compact) leaves them behind when it rewrites the live rows into a new file. Appends reserve their rows
// under an flock on the file, so processes sharing it never write the same row. A label written twice
// since the last snapshot overwrites the row this process gave it.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace nearline {

class FullVectors {
 public:
  static constexpr uint32_t kNoRow = UINT32_MAX;

  // Opens (creating it if need be) `path`; with `slotsPath`, takes the slot table a snapshot saved.
  FullVectors(const std::string& path, size_t dims, const std::string& slotsPath = "") : path_(path), dims_(dims) {
    uint64_t rows = 0;
    if (!slotsPath.empty()) rows = LoadSlots(slotsPath);
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) Fail("open " + path);
    if (FileRows() < rows) throw std::runtime_error(path + " is shorter than its snapshot says");
    // Every row there now is someone else's or a snapshot's: never written by this process.
    next_ = end_ = durable_ = FileRows();
  }

  ~FullVectors() {
    if (fd_ >= 0) ::close(fd_);
  }

  FullVectors(const FullVectors&) = delete;
  FullVectors& operator=(const FullVectors&) = delete;

  size_t RowBytes() const { return dims_ * sizeof(float); }

  // Rows in the file, whoever wrote them.
  uint64_t FileRows() const {
    struct stat st;
    if (::fstat(fd_, &st) != 0) Fail("stat " + path_);
    return (static_cast<uint64_t>(st.st_size) + RowBytes() - 1) / RowBytes();
  }

  // Before `count` Puts of labels below `labels`: room in the slot table, and `count` fresh rows at the end of
  // the file, taken under its lock. Call before writers start, never beside them.
  void Reserve(size_t labels, size_t count) {
    if (labels > slots_.size()) slots_.resize(labels, kNoRow);
    if (count == 0) return;
    if (::flock(fd_, LOCK_EX) != 0) Fail("lock " + path_);
    uint64_t base = FileRows();
    int ok = ::ftruncate(fd_, static_cast<off_t>((base + count) * RowBytes()));
    ::flock(fd_, LOCK_UN);
    if (ok != 0) Fail("extend " + path_);
    if (base + count >= kNoRow) throw std::runtime_error("vector file holds too many rows");
    next_ = base;
    end_ = base + count;
  }

  // Thread-safe for distinct labels (Reserve first).
  void Put(uint32_t label, const float* v) {
    uint32_t row = slots_[label];
    if (row == kNoRow || row < durable_) {
      uint64_t fresh = next_.fetch_add(1);
      if (fresh >= end_) throw std::runtime_error("vector file: more writes than rows reserved");
      row = static_cast<uint32_t>(fresh);
    }
    WriteRow(fd_, row, v);
    slots_[label] = row;
  }

  // Copies label's vector into out; false for a label never written.
  bool Get(uint32_t label, float* out) const {
    if (label >= slots_.size() || slots_[label] == kNoRow) return false;
    ReadRow(slots_[label], out);
    return true;
  }

  bool Has(uint32_t label) const { return label < slots_.size() && slots_[label] != kNoRow; }

  uint64_t RowOf(uint32_t label) const { return slots_[label]; }

  void ReadRow(uint64_t row, float* out) const {
    size_t want = RowBytes();
    auto* dst = reinterpret_cast<char*>(out);
    off_t at = static_cast<off_t>(row * want);
    while (want > 0) {
      ssize_t got = ::pread(fd_, dst, want, at);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) Fail("read " + path_);
      dst += got;
      at += got;
      want -= static_cast<size_t>(got);
    }
  }

  // The slot table as of now, to `path`; rows it names are never written again. Writers must be held back.
  void SaveSlots(const std::string& path) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    uint64_t rows = end_, n = slots_.size();
    out.write(kMagic, sizeof(kMagic));
    out.write(reinterpret_cast<const char*>(&rows), sizeof(rows));
    out.write(reinterpret_cast<const char*>(&n), sizeof(n));
    out.write(reinterpret_cast<const char*>(slots_.data()), static_cast<std::streamsize>(n * sizeof(uint32_t)));
    out.close();
    if (!out) throw std::runtime_error("cannot write " + path);
    durable_ = rows;
  }

  // Rows no live label points at.
  uint64_t DeadRows(const std::vector<bool>& live) const {
    uint64_t used = 0;
    for (size_t l = 0; l < slots_.size(); l++) used += (slots_[l] != kNoRow && l < live.size() && live[l]) ? 1 : 0;
    return FileRows() - used;
  }

  // Rewrites the rows of live labels, in label order, into `path` (fsynced) and continues there. Nothing may
  // read or write meanwhile. The old file stays as it was: the snapshot on disk still names it.
  void Compact(const std::string& path, const std::vector<bool>& live) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) Fail("open " + path);
    std::vector<uint32_t> slots(slots_.size(), kNoRow);
    std::vector<float> row(dims_);
    uint32_t next = 0;
    try {
      for (size_t l = 0; l < slots_.size(); l++) {
        if (slots_[l] == kNoRow || l >= live.size() || !live[l]) continue;
        ReadRow(slots_[l], row.data());
        WriteRow(fd, next, row.data());
        slots[l] = next++;
      }
      if (::fsync(fd) != 0) Fail("fsync " + path);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd_);
    fd_ = fd;
    path_ = path;
    slots_.swap(slots);
    next_ = end_ = next;
    durable_ = 0;
  }

 private:
  static constexpr char kMagic[8] = {'N', 'L', 'S', 'L', 'O', 'T', 'S', '1'};

  [[noreturn]] static void Fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

  void WriteRow(int fd, uint64_t row, const float* v) const {
    size_t want = RowBytes();
    const auto* src = reinterpret_cast<const char*>(v);
    off_t at = static_cast<off_t>(row * want);
    while (want > 0) {
      ssize_t put = ::pwrite(fd, src, want, at);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) Fail("write " + path_);
      src += put;
      at += put;
      want -= static_cast<size_t>(put);
    }
  }

  uint64_t LoadSlots(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[sizeof(kMagic)];
    uint64_t rows = 0, n = 0;
    in.read(magic, sizeof(magic));
    in.read(reinterpret_cast<char*>(&rows), sizeof(rows));
    in.read(reinterpret_cast<char*>(&n), sizeof(n));
    if (!in || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) throw std::runtime_error(path + " is not a slot table");
    slots_.resize(n);
    in.read(reinterpret_cast<char*>(slots_.data()), static_cast<std::streamsize>(n * sizeof(uint32_t)));
    if (!in) throw std::runtime_error(path + " is cut short");
    for (uint32_t row : slots_) {
      if (row != kNoRow && row >= rows) throw std::runtime_error(path + " names a row past the end of the vectors");
    }
    return rows;
  }

  std::string path_;
  size_t dims_;
  int fd_ = -1;
  std::vector<uint32_t> slots_;
  // Rows reserved for this process's writes: next_ up to end_.
  std::atomic<uint64_t> next_{0};
  uint64_t end_ = 0;
  // Rows below this are a snapshot's or another process's: never overwritten.
  uint64_t durable_ = 0;
};

}  // namespace nearline
