// nearline's HNSW binding: hnswlib's index (the headers hnswlib-node ships) behind an N-API class that
// takes Float32Array without copying and runs searches, inserts and saves on the libuv thread pool,
// so the event loop stays free and concurrent calls use every core on one shared index. Distances come
// from distances.cc (kernel chosen at run time), filters from predicate.h (evaluated during the walk).

#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "distances.h"
#include "hnswlib.h"
#include "predicate.h"
#include "quantized.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif
// POSIX: snapshots are written with write/fdatasync (full_vectors.h reads with pread).
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#endif

namespace {

using Hnsw = hnswlib::HierarchicalNSW<float>;
using nearline::Predicate;

constexpr uint32_t kNoInternal = UINT32_MAX;

// hnswlib's space interface over nearline's kernels: the index calls through fstdistfunc_ as with its own spaces.
class SimdSpace : public hnswlib::SpaceInterface<float> {
 public:
  SimdSpace(bool ip, size_t dims, nearline::Kernel k)
      : dims_(dims), fn_(ip ? nearline::IpDistance(k) : nearline::L2Distance(k)) {}
  size_t get_data_size() override { return dims_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return fn_; }
  void* get_dist_func_param() override { return &dims_; }

 private:
  size_t dims_;
  hnswlib::DISTFUNC<float> fn_;
};

struct Shared {
  std::unique_ptr<hnswlib::SpaceInterface<float>> space;
  std::unique_ptr<Hnsw> index;
  size_t dims = 0;
  // Set for an int8 index: the graph holds codes, the f32 vectors are on disk (quantized.h).
  std::unique_ptr<nearline::Quantized> q;
  // label -> hnswlib's internal id, so an exact scan checks a label without the locked hash map. Sized to the
  // capacity by the constructor and Resize (which run alone), so inserts running beside exact scans only store
  // into it, never reallocate it.
  std::vector<uint32_t> internal_of;

  // Per internal id: 1 once its insert returned (every level linked), set after hnswlib's addPoint and read by
  // searches before they descend into a node. Sized like internal_of.
  std::vector<uint8_t> complete;

  // The copy of the graph a snapshot writes (copyImage, writeImage); one snapshot at a time per index.
  std::unique_ptr<class GraphImage> image;

  // While a copy runs beside writes (beginCopy .. finishCopy): the internal ids whose memory a write may have
  // changed, each node an insert, update or delete touched and every node it links to on any level. Writes
  // run one row at a time meanwhile (AddWorker), so a node's lists right before and right after its write
  // name every list the write changed.
  std::atomic<bool> tracking{false};
  std::mutex dirtyLock;
  std::vector<uint32_t> dirty;

  void MarkAround(hnswlib::tableint id) {
    std::vector<uint32_t> ids{id};
    const Hnsw& h = *index;
    auto add = [&](const hnswlib::linklistsizeint* list) {
      const hnswlib::tableint* to = reinterpret_cast<const hnswlib::tableint*>(list + 1);
      ids.insert(ids.end(), to, to + h.getListCount(const_cast<hnswlib::linklistsizeint*>(list)));
    };
    add(h.get_linklist0(id));
    for (int level = 1; level <= h.element_levels_[id]; level++) add(h.get_linklist(id, level));
    std::lock_guard<std::mutex> lock(dirtyLock);
    dirty.insert(dirty.end(), ids.begin(), ids.end());
  }

  uint32_t InternalOf(size_t label) const { return __atomic_load_n(&internal_of[label], __ATOMIC_ACQUIRE); }
  bool Complete(hnswlib::tableint id) const { return __atomic_load_n(&complete[id], __ATOMIC_ACQUIRE) != 0; }
  void MarkComplete(hnswlib::tableint id) { __atomic_store_n(&complete[id], 1, __ATOMIC_RELEASE); }

  void Reserve(size_t capacity) {
    if (capacity > internal_of.size()) internal_of.resize(capacity, kNoInternal);
    if (capacity > complete.size()) complete.resize(capacity, 0);
  }

  void Track(const uint32_t* labels, size_t n) {
    std::unique_lock<std::mutex> lock(index->label_lookup_lock);
    for (size_t i = 0; i < n; i++) {
      auto it = index->label_lookup_.find(labels[i]);
      if (it == index->label_lookup_.end()) continue;
      if (labels[i] >= internal_of.size()) throw std::runtime_error("label beyond the index's capacity");
      __atomic_store_n(&internal_of[labels[i]], static_cast<uint32_t>(it->second), __ATOMIC_RELEASE);
    }
  }

  // One row into the graph (its code, for an int8 index, with the f32 vector to the file), under the label's
  // lock as hnswlib's addPoint(point, label) takes it; returns the internal id, to mark the node complete.
  // `code`: scratch.
  // A deleted label comes back with its new vector before its deletion mark goes, so no search returns it
  // with the vector of the row it held before (hnswlib's addPoint unmarks first).
  hnswlib::tableint Insert(const float* v, uint32_t label, std::vector<uint8_t>& code) {
    std::unique_lock<std::mutex> lock(index->getLabelOpMutex(label));
    const void* point = v;
    if (q) {
      q->full->Put(label, v);
      code.resize(q->bytes);
      nearline::QuantizeInt8(v, dims, code.data());
      point = code.data();
    }
    hnswlib::tableint existing = 0;
    bool found = false;
    {
      std::unique_lock<std::mutex> table(index->label_lookup_lock);
      auto it = index->label_lookup_.find(label);
      if (it != index->label_lookup_.end()) {
        found = true;
        existing = it->second;
      }
    }
    bool track = tracking.load(std::memory_order_acquire);
    if (track && found) MarkAround(existing);
    if (!found || !index->isMarkedDeleted(existing)) {
      hnswlib::tableint id = index->addPoint(point, label, -1);
      if (track) MarkAround(id);
      return id;
    }
    // The vector while still deleted, the mark off, then the links repaired (which with the mark on would link
    // the entry point to itself when it is this node); a search that meets the node unmarked reads the new vector.
    std::memcpy(index->getDataByInternalId(existing), point, index->data_size_);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    index->unmarkDeletedInternal(existing);
    index->updatePoint(point, existing, 1.0);
    if (track) MarkAround(existing);
    return existing;
  }

  void TrackAll() {
    std::vector<uint32_t> labels;
    size_t top = index->max_elements_;
    for (auto& kv : index->label_lookup_) {
      labels.push_back(static_cast<uint32_t>(kv.first));
      top = std::max<size_t>(top, kv.first + 1);
    }
    Reserve(top);
    for (size_t id = 0; id < index->cur_element_count; id++) complete[id] = 1;
    Track(labels.data(), labels.size());
  }
};

// A resize reallocates the whole graph, and inserts leave temporaries in per-thread arenas; glibc keeps
// both as resident free memory unless asked to give whole free pages back.
void ReleaseFreePages() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

nearline::Kernel Active() {
  std::string problem;
  nearline::Kernel k = nearline::ActiveKernel(&problem);
  if (!problem.empty()) throw std::runtime_error(problem);
  return k;
}

bool IsIp(const std::string& name) {
  if (name != "l2" && name != "ip") throw std::runtime_error("space must be 'l2' or 'ip'");
  return name == "ip";
}

std::unique_ptr<hnswlib::SpaceInterface<float>> MakeSpace(const std::string& name, size_t dims, bool int8) {
  if (int8) return std::make_unique<nearline::Int8Space>(IsIp(name), dims, Active());
  return std::make_unique<SimdSpace>(IsIp(name), dims, Active());
}

// A node's neighbour list at `level`, read without its lock while inserts and updates may rewrite it: a search
// never waits for a write (on a crowded machine a lock holder can be descheduled, and the search with it). What
// it may see instead is safe to walk: hnswlib writes lists in place, one 32-bit id at a time, and every id it
// ever writes is a node whose vector is already stored, so a list read mid-update holds valid ids, old or new.
// A vector updated in place may be read half old, half new: its distance is off for that one search, the race
// hnswlib's own searches beside its updatePoint have.
// Sizes are clamped and ids past the element count dropped. Upper levels are reached only through nodes
// whose insert finished (Shared::complete), since their lists live in memory allocated during the insert.
inline int ReadLinks(const Hnsw& h, hnswlib::tableint node, int level, size_t limit, hnswlib::tableint* out) {
  unsigned int* data = level == 0 ? h.get_linklist0(node) : h.get_linklist(node, level);
  size_t size = std::min<size_t>(__atomic_load_n(reinterpret_cast<unsigned short*>(data), __ATOMIC_RELAXED), limit);
  size_t count = h.cur_element_count.load(std::memory_order_acquire);
  int n = 0;
  for (size_t i = 0; i < size; i++) {
    hnswlib::tableint id = __atomic_load_n(data + 1 + i, __ATOMIC_RELAXED);
    if (id < count) out[n++] = id;
  }
  return n;
}

using Candidate = std::pair<float, hnswlib::tableint>;
using MaxHeap = std::priority_queue<Candidate, std::vector<Candidate>, Hnsw::CompareByFirst>;

// hnswlib's searchBaseLayerST (ef candidates on level 0, skipping deleted or disallowed nodes as results but
// walking through them), reading each neighbour list with ReadLinks. `check` false: no deletions, no predicate.
template <bool check>
MaxHeap SearchBase(const Hnsw& h, hnswlib::tableint ep, const float* q, size_t ef, hnswlib::BaseFilterFunctor* allow) {
  hnswlib::VisitedList* vl = h.visited_list_pool_->getFreeVisitedList();
  hnswlib::vl_type* visited = vl->mass;
  hnswlib::vl_type tag = vl->curV;
  std::vector<hnswlib::tableint> links(h.maxM0_ + 1);
  auto accepts = [&](hnswlib::tableint id) { return !check || (!h.isMarkedDeleted(id) && (allow == nullptr || (*allow)(h.getExternalLabel(id)))); };
  MaxHeap top;
  MaxHeap cands;
  float lower;
  if (accepts(ep)) {
    float d = h.fstdistfunc_(q, h.getDataByInternalId(ep), h.dist_func_param_);
    lower = d;
    top.emplace(d, ep);
    cands.emplace(-d, ep);
  } else {
    lower = std::numeric_limits<float>::max();
    cands.emplace(-lower, ep);
  }
  visited[ep] = tag;
  while (!cands.empty()) {
    auto [negd, node] = cands.top();
    if (-negd > lower && (!check || top.size() == ef)) break;
    cands.pop();
    int size = ReadLinks(h, node, 0, h.maxM0_, links.data());
    for (int j = 0; j < size; j++) {
      if (j + 1 < size) {
        __builtin_prefetch(visited + links[j + 1]);
        __builtin_prefetch(h.getDataByInternalId(links[j + 1]));
      }
      hnswlib::tableint c = links[j];
      if (visited[c] == tag) continue;
      visited[c] = tag;
      float d = h.fstdistfunc_(q, h.getDataByInternalId(c), h.dist_func_param_);
      if (top.size() < ef || lower > d) {
        cands.emplace(-d, c);
        if (accepts(c)) top.emplace(d, c);
        while (top.size() > ef) top.pop();
        if (!top.empty()) lower = top.top().first;
      }
    }
  }
  h.visited_list_pool_->releaseVisitedList(vl);
  return top;
}

// hnswlib's searchKnn with the candidate list size passed in instead of read from the index, so concurrent
// searches with different ef never race on setEf, and safe beside inserts (see ReadLinks). With no deletions
// and no predicate it runs the bare-bone loop (no per-candidate deletion or filter check).
size_t SearchOne(const Shared& s, const float* q, size_t k, size_t ef, hnswlib::BaseFilterFunctor* allow, uint32_t* labels,
                 float* distances) {
  const Hnsw& h = *s.index;
  if (h.cur_element_count == 0) return 0;
  // The entry point's own level, not maxlevel_: an insert raising the top level sets the two one after the other.
  hnswlib::tableint cur = __atomic_load_n(&h.enterpoint_node_, __ATOMIC_ACQUIRE);
  int maxlevel = h.element_levels_[cur];
  std::vector<hnswlib::tableint> links(std::max(h.maxM_, h.maxM0_) + 1);
  float curdist = h.fstdistfunc_(q, h.getDataByInternalId(cur), h.dist_func_param_);
  for (int level = maxlevel; level > 0; level--) {
    bool changed = true;
    while (changed) {
      changed = false;
      int size = ReadLinks(h, cur, level, h.maxM_, links.data());
      for (int i = 0; i < size; i++) {
        float d = h.fstdistfunc_(q, h.getDataByInternalId(links[i]), h.dist_func_param_);
        if (d < curdist && s.Complete(links[i])) {
          curdist = d;
          cur = links[i];
          changed = true;
        }
      }
    }
  }
  auto top = (h.num_deleted_ == 0 && allow == nullptr) ? SearchBase<false>(h, cur, q, std::max(ef, k), nullptr)
                                                       : SearchBase<true>(h, cur, q, std::max(ef, k), allow);
  while (top.size() > k) top.pop();
  size_t n = top.size();
  for (size_t i = n; i-- > 0;) {
    labels[i] = static_cast<uint32_t>(h.getExternalLabel(top.top().second));
    distances[i] = top.top().first;
    top.pop();
  }
  return n;
}

constexpr size_t kPrefetch = 4;

inline void Prefetch(const char* p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
}

// Brute force over the live labels the predicate allows: every label, or those set in `driver`.
void ExactScan(const Shared& s, const float* queries, size_t nq, size_t k, const Predicate* pred, const nearline::Bitmap* driver,
               uint32_t* labels, float* distances, uint32_t* counts) {
  const Hnsw& h = *s.index;
  std::vector<std::pair<hnswlib::tableint, uint32_t>> ids;
  // The predicate first: it reads the columns in label order, while the deletion mark sits in the graph's
  // element, a cache miss per label.
  auto consider = [&](uint32_t label) {
    if (label >= s.internal_of.size()) return;
    if (pred != nullptr && !pred->Allowed(label)) return;
    uint32_t internal = s.InternalOf(label);
    if (internal == kNoInternal || h.isMarkedDeleted(internal)) return;
    ids.emplace_back(internal, label);
  };
  if (driver != nullptr) {
    for (size_t w = 0; w < driver->size; w++) {
      for (uint32_t bits = driver->words[w]; bits != 0; bits &= bits - 1) consider(static_cast<uint32_t>(w * 32 + __builtin_ctz(bits)));
    }
  } else {
    for (size_t label = 0; label < s.internal_of.size(); label++) consider(static_cast<uint32_t>(label));
  }
  std::vector<std::pair<float, uint32_t>> heap;
  heap.reserve(k + 1);
  // An int8 index scans its f32 vectors on disk: exact means exact.
  std::vector<float> row(s.q ? s.dims : 0);
  for (size_t qi = 0; qi < nq; qi++) {
    const float* q = queries + qi * s.dims;
    heap.clear();
    for (size_t i = 0; i < ids.size(); i++) {
      auto [internal, label] = ids[i];
      float d;
      if (s.q) {
        d = s.q->Distance(q, label, row.data());
      } else {
        // The rows are scattered through the graph's memory: fetch a few ahead, as hnswlib's walk does.
        if (i + kPrefetch < ids.size()) Prefetch(h.getDataByInternalId(ids[i + kPrefetch].first), s.dims * sizeof(float));
        d = h.fstdistfunc_(q, h.getDataByInternalId(internal), h.dist_func_param_);
      }
      if (heap.size() < k) {
        heap.emplace_back(d, label);
        std::push_heap(heap.begin(), heap.end());
      } else if (d < heap.front().first) {
        std::pop_heap(heap.begin(), heap.end());
        heap.back() = {d, label};
        std::push_heap(heap.begin(), heap.end());
      }
    }
    std::sort_heap(heap.begin(), heap.end());
    for (size_t i = 0; i < heap.size(); i++) {
      labels[qi * k + i] = heap[i].second;
      distances[qi * k + i] = heap[i].first;
    }
    counts[qi] = static_cast<uint32_t>(heap.size());
  }
}

float* FloatData(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  }
  return v.As<Napi::Float32Array>().Data();
}

template <typename T, napi_typedarray_type type>
std::pair<const T*, size_t> Typed(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(v.Env(), std::string("filter: ") + what + " has the wrong array type");
  }
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return {a.Data(), a.ElementLength()};
}

template <typename T, napi_typedarray_type type>
std::vector<std::pair<const T*, size_t>> TypedList(const Napi::Object& o, const char* key) {
  std::vector<std::pair<const T*, size_t>> out;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("filter: ") + key + " must be an array");
  auto arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(Typed<T, type>(arr.Get(i), key));
  return out;
}

// {code: Int32Array, consts: Float64Array, tags: Uint8Array[], values: Float64Array[], sets: Float64Array[],
//  bitmaps: Uint32Array[], exclude?: Uint32Array (sorted)}: read once per call; the arrays stay the JS ones.
std::unique_ptr<Predicate> ReadPredicate(const Napi::Value& v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  auto p = std::make_unique<Predicate>();
  if (o.Has("code")) {
    auto code = Typed<int32_t, napi_int32_array>(o.Get("code"), "code");
    p->program.code.assign(code.first, code.first + code.second);
    auto consts = Typed<double, napi_float64_array>(o.Get("consts"), "consts");
    p->program.consts.assign(consts.first, consts.first + consts.second);
    auto tags = TypedList<uint8_t, napi_uint8_array>(o, "tags");
    auto values = TypedList<double, napi_float64_array>(o, "values");
    if (tags.size() != values.size()) throw Napi::TypeError::New(v.Env(), "filter: tags and values differ in length");
    for (size_t i = 0; i < tags.size(); i++) p->program.columns.push_back({tags[i].first, values[i].first, std::min(tags[i].second, values[i].second)});
    for (auto& [data, n] : TypedList<double, napi_float64_array>(o, "sets")) p->program.sets.push_back({data, n});
    for (auto& [data, n] : TypedList<uint32_t, napi_uint32_array>(o, "bitmaps")) p->program.bitmaps.push_back({data, n});
    try {
      p->program.Check();
    } catch (const std::exception& e) {
      throw Napi::Error::New(v.Env(), e.what());
    }
  }
  Napi::Value ex = o.Get("exclude");
  if (!ex.IsUndefined()) {
    auto e = Typed<uint32_t, napi_uint32_array>(ex, "exclude");
    p->exclude.assign(e.first, e.first + e.second);
    std::sort(p->exclude.begin(), p->exclude.end());
  }
  if (p->Empty()) return nullptr;
  return p;
}

// Keeps the JS arrays a worker reads alive until it finishes.
class Pinned {
 public:
  void Pin(const Napi::Value& v) {
    if (v.IsObject()) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

 private:
  std::vector<Napi::ObjectReference> refs_;
};

// The answer of a search or exact scan: per query counts[i] hits at labels/distances[i*k ..], nearest first.
struct Found {
  std::vector<uint32_t> labels;
  std::vector<float> distances;
  std::vector<uint32_t> counts;
  Found(size_t nq, size_t k) : labels(nq * k), distances(nq * k), counts(nq) {}

  Napi::Object ToJs(Napi::Env env) const {
    auto l = Napi::Uint32Array::New(env, labels.size());
    auto d = Napi::Float32Array::New(env, distances.size());
    auto c = Napi::Uint32Array::New(env, counts.size());
    std::memcpy(l.Data(), labels.data(), labels.size() * sizeof(uint32_t));
    std::memcpy(d.Data(), distances.data(), distances.size() * sizeof(float));
    std::memcpy(c.Data(), counts.data(), counts.size() * sizeof(uint32_t));
    auto out = Napi::Object::New(env);
    out.Set("labels", l);
    out.Set("distances", d);
    out.Set("counts", c);
    return out;
  }
};

struct SearchJob {
  std::shared_ptr<Shared> s;
  const float* queries;
  size_t nq, k, ef;
  std::unique_ptr<Predicate> pred;
  bool exact = false;
  const uint32_t* driver = nullptr;
  size_t driverSize = 0;

  void Run(Found& out) const {
    if (exact) {
      nearline::Bitmap d{driver, driverSize};
      ExactScan(*s, queries, nq, k, pred.get(), driver != nullptr ? &d : nullptr, out.labels.data(), out.distances.data(), out.counts.data());
      return;
    }
    if (s->q) return RunQuantized(out);
    for (size_t i = 0; i < nq; i++) {
      out.counts[i] = static_cast<uint32_t>(SearchOne(*s, queries + i * s->dims, k, ef, pred.get(), &out.labels[i * k], &out.distances[i * k]));
    }
  }

  // The graph walk on the query's code for k * rescore candidates, then their exact order.
  void RunQuantized(Found& out) const {
    const nearline::Quantized& qz = *s->q;
    size_t wide = k * qz.rescore;
    std::vector<uint32_t> labels(wide);
    std::vector<float> distances(wide);
    for (size_t i = 0; i < nq; i++) {
      const float* query = queries + i * s->dims;
      std::vector<uint8_t> code = qz.Code(query);
      size_t n = SearchOne(*s, reinterpret_cast<const float*>(code.data()), wide, std::max(ef, wide), pred.get(), labels.data(), distances.data());
      out.counts[i] = static_cast<uint32_t>(qz.Rescore(query, labels.data(), n, k, &out.labels[i * k], &out.distances[i * k]));
    }
  }
};

class SearchWorker : public Napi::AsyncWorker {
 public:
  SearchWorker(Napi::Env env, SearchJob job)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)), found_(job_.nq, job_.k) {}

  Pinned pinned;
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      job_.Run(found_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override { deferred_.Resolve(found_.ToJs(Env())); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  SearchJob job_;
  Found found_;
};

// Rows an insert call must reach for its temporaries to be given back to the OS afterwards.
constexpr size_t kTrimAfter = 1024;

// Inserts (or, for a label already present, updates in place) on several threads: hnswlib's addPoint is thread-safe.
class AddWorker : public Napi::AsyncWorker {
 public:
  AddWorker(Napi::Env env, std::shared_ptr<Shared> s, const float* vectors, const uint32_t* labels, size_t n, size_t threads)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        s_(std::move(s)),
        vectors_(vectors),
        labels_(labels),
        n_(n),
        threads_(std::max<size_t>(1, threads)) {}

  Pinned pinned;
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::atomic<size_t> next{0};
    std::mutex errorLock;
    std::string error;
    if (s_->q) {
      try {
        s_->q->full->Reserve(n_ ? size_t{*std::max_element(labels_, labels_ + n_)} + 1 : 0, n_);
      } catch (const std::exception& e) {
        return SetError(e.what());
      }
    }
    auto work = [&] {
      std::vector<uint8_t> code;
      for (size_t i; (i = next++) < n_;) {
        try {
          s_->MarkComplete(s_->Insert(vectors_ + i * s_->dims, labels_[i], code));
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(errorLock);
          if (error.empty()) error = e.what();
        }
      }
    };
    // One row at a time while a copy tracks what writes touch (Shared::tracking).
    size_t extra = s_->tracking.load(std::memory_order_acquire) ? 0 : std::min(threads_, std::max<size_t>(1, n_ / 64)) - 1;
    std::vector<std::thread> pool;
    for (size_t t = 0; t < extra; t++) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    try {
      s_->Track(labels_, n_);
    } catch (const std::exception& e) {
      if (error.empty()) error = e.what();
    }
    // After bulk loads only: malloc_trim locks the allocator's arenas while it walks them, which stalls every
    // thread that allocates meanwhile (the event loop among them); small writes reuse what the last one freed.
    if (n_ >= kTrimAfter) ReleaseFreePages();
    if (!error.empty()) SetError(error);
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Shared> s_;
  const float* vectors_;
  const uint32_t* labels_;
  size_t n_, threads_;
};

// Runs `work` on the thread pool; the promise resolves with undefined, or rejects with what it threw.
class TaskWorker : public Napi::AsyncWorker {
 public:
  TaskWorker(Napi::Env env, std::function<void()> work)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
};

// Writes a file in pieces, each flushed to disk and followed by a pause, so the source log's fdatasyncs (a
// push's acknowledgement) never queue behind a whole snapshot: measured here, 8 MiB pieces with 10 ms pauses
// took the log's median fsync beside a 110 MB snapshot from 7-11 ms to ~1 ms. Snapshots have time; pushes do
// not. Only system calls: a forked child may use it.
class PacedFile {
 public:
  static constexpr size_t kPiece = 8 << 20;
  explicit PacedFile(int fd) : fd_(fd) {}

  bool Write(const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = write(fd_, p, std::min(n, kPiece - unsynced_));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
      unsynced_ += static_cast<size_t>(w);
      if (unsynced_ >= kPiece) {
        if (fdatasync(fd_) != 0) return false;
        unsynced_ = 0;
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, nullptr);
      }
    }
    return true;
  }

 private:
  int fd_;
  size_t unsynced_ = 0;
};

// hnswlib's file header (saveIndex's first fields, in its order).
template <typename Put>
void PutHeader(const Hnsw& h, size_t count, Put&& put) {
  auto pod = [&](auto v) { put(&v, sizeof(v)); };
  pod(h.offsetLevel0_);
  pod(h.max_elements_);
  pod(count);
  pod(h.size_data_per_element_);
  pod(h.label_offset_);
  pod(h.offsetData_);
  pod(h.maxlevel_);
  pod(h.enterpoint_node_);
  pod(h.maxM_);
  pod(h.maxM0_);
  pod(h.M_);
  pod(h.mult_);
  pod(h.ef_construction_);
}

// The size of element i's upper-level lists, as saveIndex writes it before them.
unsigned int UpperBytes(const Hnsw& h, size_t i) {
  return h.element_levels_[i] > 0 ? static_cast<unsigned int>(h.size_links_per_element_ * h.element_levels_[i]) : 0;
}

// The bytes of element i's upper-level links as saveIndex writes them: their size, then the lists.
template <typename Put>
void PutUpperLinks(const Hnsw& h, size_t i, Put&& put) {
  unsigned int n = UpperBytes(h, i);
  put(&n, sizeof(n));
  if (n) put(h.linkLists_[i], n);
}

// The graph in saveIndex's file format, copied in memory while writers wait (a memcpy of the bottom layer
// and the upper links), then written to a file beside them. The bottom layer's buffer is allocated and
// touched beforehand (Reserve), so the copy does not take page faults while writers wait.
class GraphImage {
 public:
  void Reserve(size_t bytes) {
    if (bytes <= capacity_) return;
    level0_.reset(new char[bytes]);
    std::memset(level0_.get(), 0, bytes);
    capacity_ = bytes;
  }

  // Run with no insert, update, delete or resize in flight (searches may run: they only read). Beside
  // writes (with no resize in flight), the copy may catch nodes mid-write: FixUp recopies those.
  void Copy(const Hnsw& h) {
    count_ = h.cur_element_count;
    head_.clear();
    links_.clear();
    // Room for the nodes writes add before FixUp, so it does not reallocate these while writers wait.
    linkAt_.reserve(count_ + count_ / 16 + 1024);
    linkAt_.assign(count_, 0);
    PutHeader(h, count_, Append(head_));
    level0Bytes_ = count_ * h.size_data_per_element_;
    Reserve(level0Bytes_);
    std::memcpy(level0_.get(), h.data_level0_memory_, level0Bytes_);
    for (size_t i = 0; i < count_; i++) {
      linkAt_[i] = links_.size();
      // A node an insert beside this copy has counted but not yet given its upper lists: zeros, recopied later.
      unsigned int n = UpperBytes(h, i);
      char* upper = n ? h.linkLists_[i] : nullptr;
      Append(links_)(&n, sizeof(n));
      if (upper) Append(links_)(upper, n);
      else links_.resize(links_.size() + n, 0);
    }
    links_.reserve(links_.size() + links_.size() / 16 + 4096);
  }

  // After a Copy beside writes, with none in flight now: the nodes those writes touched (`dirty`) copied
  // again, the nodes added since appended, and the header as it is now. False when a node's upper lists
  // changed size (cannot happen to a node that existed; then the caller copies everything again).
  bool FixUp(const Hnsw& h, const std::vector<uint32_t>& dirty) {
    size_t per = h.size_data_per_element_;
    for (uint32_t id : dirty) {
      if (id >= count_) continue;
      std::memcpy(level0_.get() + id * per, h.data_level0_memory_ + id * per, per);
      unsigned int n = UpperBytes(h, id);
      unsigned int had;
      std::memcpy(&had, links_.data() + linkAt_[id], sizeof(had));
      if (had != n) return false;
      if (n) std::memcpy(links_.data() + linkAt_[id] + sizeof(n), h.linkLists_[id], n);
    }
    size_t count = h.cur_element_count;
    if (count > count_) {
      if (count * per > capacity_) {
        std::unique_ptr<char[]> grown(new char[count * per]);
        std::memcpy(grown.get(), level0_.get(), count_ * per);
        level0_ = std::move(grown);
        capacity_ = count * per;
      }
      std::memcpy(level0_.get() + count_ * per, h.data_level0_memory_ + count_ * per, (count - count_) * per);
      for (size_t i = count_; i < count; i++) {
        linkAt_.push_back(links_.size());
        PutUpperLinks(h, i, Append(links_));
      }
      count_ = count;
      level0Bytes_ = count * per;
    }
    head_.clear();
    PutHeader(h, count_, Append(head_));
    return true;
  }

  void Write(const std::string& path) const {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    PacedFile out(fd);
    bool ok = out.Write(head_.data(), head_.size()) && out.Write(level0_.get(), level0Bytes_) && out.Write(links_.data(), links_.size());
    ok = close(fd) == 0 && ok;
    if (!ok) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  }

 private:
  struct Appender {
    std::vector<char>& to;
    void operator()(const void* p, size_t n) const { to.insert(to.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n); }
  };
  static Appender Append(std::vector<char>& to) { return Appender{to}; }

  std::unique_ptr<char[]> level0_;
  size_t capacity_ = 0, level0Bytes_ = 0, count_ = 0;
  std::vector<char> head_, links_;
  // Where each node's upper lists start in links_ (their size field).
  std::vector<size_t> linkAt_;
};

#if defined(__linux__)
// Writes the index in hnswlib's file format (saveIndex's bytes) from a forked child process: fork() hands the
// child a copy-on-write image of the graph as it is at that instant, so the caller holds writers back only for
// the fork (page tables, not the graph), and the child writes and fsyncs the file while inserts go on here.
// The child runs only system calls (no allocation, no locks another thread could hold at the fork) and exits.
// The caller runs it with no insert, resize or delete in flight; searches may run beside it (they only read).
class ForkSaveWorker : public Napi::AsyncWorker {
 public:
  ForkSaveWorker(Napi::Env env, std::shared_ptr<Shared> s, std::string path)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), s_(std::move(s)), path_(std::move(path)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // Allocated before the fork: the child only fills it.
    std::vector<char> staging(1 << 20);
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) {
      SetError(std::string("cannot fork the snapshot writer: ") + std::strerror(errno));
      return;
    }
    if (pid_ == 0) _exit(WriteChild(parent, staging.data(), staging.size()));
  }

  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), pid_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  // In the child. Exit code 0, or 3-7 for the step that failed.
  int WriteChild(pid_t parent, char* buf, size_t cap) {
    // Dies with the server, and holds none of its files or sockets (a restarted server can listen again at once).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) return 3;
    // Behind the server's own threads for the CPU (best effort: the file is the same either way).
    setpriority(PRIO_PROCESS, 0, 10);
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 65536; fd++) close(fd);
    }
    int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return 4;
    const Hnsw& h = *s_->index;
    size_t count = h.cur_element_count;
    PacedFile file(fd);
    size_t used = 0;
    bool ok = true;
    auto flush = [&] {
      ok = ok && file.Write(buf, used);
      used = 0;
    };
    auto put = [&](const void* p, size_t n) {
      if (used + n > cap) flush();
      if (n > cap) {
        ok = ok && file.Write(static_cast<const char*>(p), n);
        return;
      }
      std::memcpy(buf + used, p, n);
      used += n;
    };
    PutHeader(h, count, put);
    flush();
    ok = ok && file.Write(h.data_level0_memory_, count * h.size_data_per_element_);
    for (size_t i = 0; i < count && ok; i++) PutUpperLinks(h, i, put);
    flush();
    if (!ok) return 5;
    if (fsync(fd) != 0) return 6;
    if (close(fd) != 0) return 7;
    return 0;
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Shared> s_;
  std::string path_;
  pid_t pid_ = -1;
};
#endif

class Index : public Napi::ObjectWrap<Index> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "Index",
                                      {
                                          InstanceMethod<&Index::Capacity>("capacity"),
                                          InstanceMethod<&Index::Resize>("resize"),
                                          InstanceMethod<&Index::Add>("add"),
                                          InstanceMethod<&Index::MarkDelete>("markDelete"),
                                          InstanceMethod<&Index::BeginCopy>("beginCopy"),
                                          InstanceMethod<&Index::FinishCopy>("finishCopy"),
                                          InstanceMethod<&Index::Vectors>("vectors"),
                                          InstanceMethod<&Index::Search>("search"),
                                          InstanceMethod<&Index::SearchSync>("searchSync"),
                                          InstanceMethod<&Index::Exact>("exact"),
                                          InstanceMethod<&Index::ExactSync>("exactSync"),
                                          InstanceMethod<&Index::Save>("save"),
                                          InstanceMethod<&Index::CompactVectors>("compactVectors"),
                                          InstanceMethod<&Index::ForkSave>("forkSave"),
                                          InstanceMethod<&Index::ReserveImage>("reserveImage"),
                                          InstanceMethod<&Index::CopyImage>("copyImage"),
                                          InstanceMethod<&Index::WriteImage>("writeImage"),
                                      });
    exports.Set("Index", ctor);
    return exports;
  }

  // new Index(space, dims, capacity, M, efConstruction, seed, int8?) or new Index(space, dims, path, int8?), where
  // int8 = {vectors: path of the f32 file, slots?: the slot table a snapshot saved, rescore?: candidates per k}
  explicit Index(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Index>(info), s_(std::make_shared<Shared>()) {
    Napi::Env env = info.Env();
    try {
      s_->dims = info[1].As<Napi::Number>().Uint32Value();
      std::string space = info[0].As<Napi::String>().Utf8Value();
      Napi::Value int8 = info[info[2].IsString() ? 3 : 6];
      s_->space = MakeSpace(space, s_->dims, int8.IsObject());
      if (int8.IsObject()) s_->q = MakeQuantized(int8.As<Napi::Object>(), IsIp(space), s_->dims);
      if (info[2].IsString()) {
        s_->index = std::make_unique<Hnsw>(s_->space.get(), info[2].As<Napi::String>().Utf8Value());
        if (s_->index->data_size_ != s_->space->get_data_size()) throw std::runtime_error("index file has other dimensions or quantization");
        s_->TrackAll();
      } else {
        s_->index = std::make_unique<Hnsw>(s_->space.get(), info[2].As<Napi::Number>().Uint32Value(),
                                           info[3].As<Napi::Number>().Uint32Value(), info[4].As<Napi::Number>().Uint32Value(),
                                           info[5].As<Napi::Number>().Uint32Value());
        s_->Reserve(s_->index->max_elements_);
      }
      // Slots for every label the graph has room for: inserts then never grow the table under a search.
      if (s_->q) s_->q->full->Reserve(s_->index->max_elements_, 0);
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

 private:
  static std::unique_ptr<nearline::Quantized> MakeQuantized(const Napi::Object& o, bool ip, size_t dims) {
    std::string slots = o.Has("slots") ? o.Get("slots").As<Napi::String>().Utf8Value() : "";
    auto full = std::make_unique<nearline::FullVectors>(o.Get("vectors").As<Napi::String>().Utf8Value(), dims, slots);
    size_t rescore = o.Has("rescore") ? o.Get("rescore").As<Napi::Number>().Uint32Value() : 2;
    return std::make_unique<nearline::Quantized>(ip, dims, Active(), std::move(full), rescore);
  }

  Napi::Value Capacity(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(s_->index->max_elements_));
  }

  Napi::Value Resize(const Napi::CallbackInfo& info) {
    Guard(info.Env(), [&] {
      s_->index->resizeIndex(info[0].As<Napi::Number>().Uint32Value());
      s_->Reserve(s_->index->max_elements_);
      if (s_->q) s_->q->full->Reserve(s_->index->max_elements_, 0);
      ReleaseFreePages();
    });
    return info.Env().Undefined();
  }

  // add(vectors: Float32Array, labels: Uint32Array, threads): Promise<void>
  Napi::Value Add(const Napi::CallbackInfo& info) {
    const float* vectors = FloatData(info[0], "vectors");
    auto labels = info[1].As<Napi::Uint32Array>();
    if (info[0].As<Napi::Float32Array>().ElementLength() != labels.ElementLength() * s_->dims) {
      throw Napi::RangeError::New(info.Env(), "vectors and labels differ in length");
    }
    auto* w = new AddWorker(info.Env(), s_, vectors, labels.Data(), labels.ElementLength(), info[2].As<Napi::Number>().Uint32Value());
    w->pinned.Pin(info[0]);
    w->pinned.Pin(info[1]);
    w->Queue();
    return w->Promise();
  }

  Napi::Value MarkDelete(const Napi::CallbackInfo& info) {
    uint32_t label = info[0].As<Napi::Number>().Uint32Value();
    Guard(info.Env(), [&] {
      s_->index->markDelete(label);
      if (s_->tracking.load(std::memory_order_acquire) && label < s_->internal_of.size() && s_->InternalOf(label) != kNoInternal) {
        std::lock_guard<std::mutex> lock(s_->dirtyLock);
        s_->dirty.push_back(s_->InternalOf(label));
      }
    });
    return info.Env().Undefined();
  }

  // vectors(labels: Uint32Array, out: Float32Array): copies each label's stored vector into out.
  Napi::Value Vectors(const Napi::CallbackInfo& info) {
    auto labels = info[0].As<Napi::Uint32Array>();
    float* out = FloatData(info[1], "out");
    if (info[1].As<Napi::Float32Array>().ElementLength() < labels.ElementLength() * s_->dims) {
      throw Napi::RangeError::New(info.Env(), "out is too short");
    }
    const Hnsw& h = *s_->index;
    std::unique_lock<std::mutex> lock(h.label_lookup_lock);
    for (size_t i = 0; i < labels.ElementLength(); i++) {
      auto it = h.label_lookup_.find(labels[i]);
      if (it == h.label_lookup_.end()) throw Napi::RangeError::New(info.Env(), "label not found");
      if (s_->q) Guard(info.Env(), [&] { s_->q->full->Get(labels[i], out + i * s_->dims); });
      else std::memcpy(out + i * s_->dims, h.getDataByInternalId(it->second), s_->dims * sizeof(float));
    }
    return info.Env().Undefined();
  }

  SearchJob Job(const Napi::CallbackInfo& info, bool exact) {
    const float* queries = FloatData(info[0], "queries");
    SearchJob job;
    job.s = s_;
    job.queries = queries;
    job.nq = info[0].As<Napi::Float32Array>().ElementLength() / s_->dims;
    job.k = info[1].As<Napi::Number>().Uint32Value();
    job.exact = exact;
    if (exact) {
      if (info.Length() > 3 && info[3].IsTypedArray()) {
        auto d = Typed<uint32_t, napi_uint32_array>(info[3], "driver");
        job.driver = d.first;
        job.driverSize = d.second;
      }
      job.pred = ReadPredicate(info[2]);
    } else {
      job.ef = info[2].As<Napi::Number>().Uint32Value();
      if (info.Length() > 3) job.pred = ReadPredicate(info[3]);
    }
    return job;
  }

  Napi::Value Queue(const Napi::CallbackInfo& info, bool exact) {
    auto* w = new SearchWorker(info.Env(), Job(info, exact));
    for (size_t i = 0; i < info.Length(); i++) w->pinned.Pin(info[i]);
    w->Queue();
    return w->Promise();
  }

  // search(queries: Float32Array, k, ef, filter?): Promise<{labels, distances, counts}>
  Napi::Value Search(const Napi::CallbackInfo& info) { return Queue(info, false); }

  // searchSync(queries, k, ef, filter?): the same answer, computed on the calling thread: for small
  // searches, where the hop to the thread pool and back costs more than the search itself.
  Napi::Value SearchSync(const Napi::CallbackInfo& info) { return RunNow(info, false); }

  Napi::Value RunNow(const Napi::CallbackInfo& info, bool exact) {
    SearchJob job = Job(info, exact);
    Found found(job.nq, job.k);
    Guard(info.Env(), [&] { job.Run(found); });
    return found.ToJs(info.Env());
  }

  // exact(queries: Float32Array, k, filter?, driver?: Uint32Array bitmap): brute force over the live labels the
  // filter allows (only those set in `driver`, when given), for filters so selective a graph walk would mostly meet rejects.
  Napi::Value Exact(const Napi::CallbackInfo& info) { return Queue(info, true); }

  Napi::Value ExactSync(const Napi::CallbackInfo& info) { return RunNow(info, true); }

  // forkSave(path): Promise<pid>: resolves once a child process holds a copy-on-write image of the graph and
  // writes it to `path` (then fsyncs it); reap(pid) says when it is done. Rejects where there is no fork.
  Napi::Value ForkSave(const Napi::CallbackInfo& info) {
#if defined(__linux__)
    auto* w = new ForkSaveWorker(info.Env(), s_, info[0].As<Napi::String>().Utf8Value());
    w->Queue();
    return w->Promise();
#else
    auto d = Napi::Promise::Deferred::New(info.Env());
    d.Reject(Napi::Error::New(info.Env(), "no fork on this platform").Value());
    return d.Promise();
#endif
  }

  // save(path, slots?): the graph to path; for an int8 index, the slot table of its f32 vectors to slots.
  Napi::Value Save(const Napi::CallbackInfo& info) {
    std::string slots = SlotsArg(info, 1);
    std::string path = info[0].As<Napi::String>().Utf8Value();
    return Run(info.Env(), [s = s_, path, slots] {
      s->index->saveIndex(path);
      if (s->q) s->q->full->SaveSlots(slots);
    });
  }

  // reserveImage(): Promise: allocates (and touches) room for a copy of the graph as large as it is now plus
  // some growth, so copyImage's memcpy, which writers wait for, takes no page faults. Runs beside anything.
  Napi::Value ReserveImage(const Napi::CallbackInfo& info) {
    if (!s_->image) s_->image = std::make_unique<GraphImage>();
    const Hnsw& h = *s_->index;
    size_t bytes = (h.cur_element_count + h.cur_element_count / 16 + 1024) * h.size_data_per_element_;
    return Run(info.Env(), [s = s_, bytes] { s->image->Reserve(bytes); });
  }

  // beginCopy(): from now until finishCopy, writes record the nodes they touch and run one row at a time, so
  // that copyImage may run beside them. Call it with no write in flight.
  Napi::Value BeginCopy(const Napi::CallbackInfo& info) {
    if (s_->q) throw Napi::Error::New(info.Env(), "an int8 index copies its graph with writes held back");
    {
      std::lock_guard<std::mutex> lock(s_->dirtyLock);
      s_->dirty.clear();
    }
    s_->tracking.store(true, std::memory_order_release);
    return info.Env().Undefined();
  }

  // finishCopy(): boolean: with no write in flight, brings the copy made since beginCopy up to now (the nodes
  // writes touched, those they added, the header) and stops tracking. False: the copy could not be brought up
  // to date (copy again with writes held back).
  Napi::Value FinishCopy(const Napi::CallbackInfo& info) {
    s_->tracking.store(false, std::memory_order_release);
    std::vector<uint32_t> dirty;
    {
      std::lock_guard<std::mutex> lock(s_->dirtyLock);
      dirty.swap(s_->dirty);
    }
    bool ok = s_->image && s_->image->FixUp(*s_->index, dirty);
    return Napi::Boolean::New(info.Env(), ok);
  }

  // copyImage(slots?): Promise: copies the graph in memory (for an int8 index, also saves its slot table to
  // `slots`). Run it with no insert, update, delete or resize in flight; searches may run beside it.
  Napi::Value CopyImage(const Napi::CallbackInfo& info) {
    std::string slots = SlotsArg(info, 0);
    if (!s_->image) s_->image = std::make_unique<GraphImage>();
    return Run(info.Env(), [s = s_, slots] {
      s->image->Copy(*s->index);
      if (s->q) s->q->full->SaveSlots(slots);
    });
  }

  // writeImage(path): Promise: writes the last copyImage to `path` in saveIndex's format (not fsynced), in
  // paced pieces, beside writes, and frees it.
  Napi::Value WriteImage(const Napi::CallbackInfo& info) {
    if (!s_->image) throw Napi::Error::New(info.Env(), "writeImage before copyImage");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    return Run(info.Env(), [s = s_, path] {
      std::unique_ptr<GraphImage> image = std::move(s->image);
      // On a thread of its own behind the server's threads for the CPU (nice 10; best effort), so queries
      // and inserts do not queue behind the write. The image is freed at once after: a block this large has
      // a mapping of its own (M_MMAP_THRESHOLD in Init).
      std::exception_ptr failed;
      std::thread writer([&] {
#if defined(__linux__)
        setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
#endif
        try {
          image->Write(path);
        } catch (...) {
          failed = std::current_exception();
        }
      });
      writer.join();
      if (failed) std::rethrow_exception(failed);
    });
  }

  std::string SlotsArg(const Napi::CallbackInfo& info, size_t i) {
    if (!s_->q) return "";
    if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), "an int8 index saves a slot table too: give its path");
    return info[i].As<Napi::String>().Utf8Value();
  }

  static Napi::Value Run(Napi::Env env, std::function<void()> work) {
    auto* w = new TaskWorker(env, std::move(work));
    w->Queue();
    return w->Promise();
  }

  // compactVectors(path): for an int8 index whose f32 file is mostly rows no live label uses, rewrites the live
  // ones into `path` and continues there (true); otherwise does nothing (false). Nothing may run beside it.
  Napi::Value CompactVectors(const Napi::CallbackInfo& info) {
    bool done = false;
    Guard(info.Env(), [&] {
      if (!s_->q) return;
      const Hnsw& h = *s_->index;
      std::vector<bool> live;
      size_t count = 0;
      for (auto& [label, internal] : h.label_lookup_) {
        if (h.isMarkedDeleted(internal)) continue;
        if (label >= live.size()) live.resize(label + 1, false);
        live[label] = true;
        count++;
      }
      uint64_t dead = s_->q->full->DeadRows(live);
      if (dead < 1024 || dead < count) return;
      s_->q->full->Compact(info[0].As<Napi::String>().Utf8Value(), live);
      done = true;
    });
    return Napi::Boolean::New(info.Env(), done);
  }

  template <typename F>
  static void Guard(Napi::Env env, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

  std::shared_ptr<Shared> s_;
};

// kernels(): {active, supported}: the distance kernel every index uses and all this CPU can run.
Napi::Value Kernels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string problem;
  nearline::Kernel active = nearline::ActiveKernel(&problem);
  auto out = Napi::Object::New(env);
  out.Set("active", problem.empty() ? Napi::Value(Napi::String::New(env, nearline::KernelName(active))) : env.Null());
  if (!problem.empty()) out.Set("error", problem);
  auto supported = Napi::Array::New(env);
  for (nearline::Kernel k : nearline::SupportedKernels()) supported.Set(supported.Length(), nearline::KernelName(k));
  out.Set("supported", supported);
  return out;
}

// distance(kernel, 'l2' | 'ip', a: Float32Array, b: Float32Array, int8?: boolean): one kernel's answer (with
// int8, between the two vectors' int8 codes), for the test that every kernel agrees with the scalar one.
Napi::Value Distance(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  nearline::Kernel k;
  if (!nearline::ParseKernel(info[0].As<Napi::String>().Utf8Value(), &k) || !nearline::KernelSupported(k)) {
    throw Napi::Error::New(env, "kernel not supported here");
  }
  const float* a = FloatData(info[2], "a");
  const float* b = FloatData(info[3], "b");
  size_t n = info[2].As<Napi::Float32Array>().ElementLength();
  if (info[3].As<Napi::Float32Array>().ElementLength() != n) throw Napi::RangeError::New(env, "a and b differ in length");
  bool ip = info[1].As<Napi::String>().Utf8Value() == "ip";
  if (info.Length() > 4 && info[4].ToBoolean()) {
    std::vector<uint8_t> ca(nearline::Int8Bytes(n)), cb(ca.size());
    nearline::QuantizeInt8(a, n, ca.data());
    nearline::QuantizeInt8(b, n, cb.data());
    nearline::DistFn fn = ip ? nearline::IpInt8Distance(k) : nearline::L2Int8Distance(k);
    return Napi::Number::New(env, fn(ca.data(), cb.data(), &n));
  }
  nearline::DistFn fn = ip ? nearline::IpDistance(k) : nearline::L2Distance(k);
  return Napi::Number::New(env, fn(a, b, &n));
}

// reap(pid): null while the child runs, else its exit code (-signal when a signal ended it). Never blocks.
Napi::Value Reap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if defined(__linux__)
  int status = 0;
  pid_t r = waitpid(static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value()), &status, WNOHANG);
  if (r == 0) return env.Null();
  if (r < 0) throw Napi::Error::New(env, std::string("waitpid: ") + std::strerror(errno));
  return Napi::Number::New(env, WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
#else
  throw Napi::Error::New(env, "no fork on this platform");
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // glibc raises its mmap threshold after big blocks are freed, so the graph's reallocations as an index grows
  // land in the heap and their old copies stay resident (measured: ~1.8x the index). A fixed threshold keeps
  // every block of 1 MiB or more in its own mapping, which realloc moves with mremap and free returns at once.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  exports.Set("kernels", Napi::Function::New<Kernels>(env, "kernels"));
  // releaseMemory(): gives the allocator's free pages back to the OS, so a measurement of resident memory
  // right after counts what is held, not what was freed since the last insert.
  exports.Set("releaseMemory", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    ReleaseFreePages();
    return info.Env().Undefined();
  }, "releaseMemory"));
  exports.Set("distance", Napi::Function::New<Distance>(env, "distance"));
  exports.Set("reap", Napi::Function::New<Reap>(env, "reap"));
  return Index::Init(env, exports);
}

}  // namespace

NODE_API_MODULE(nearline_hnsw, Init)
