// What an int8 index adds to an f32 one: the graph holds int8 codes (int8.h) through Int8Space, the f32
// vectors sit in a file (full_vectors.h), and a search walks the graph for more candidates than it returns
// and reorders the best of them by their exact f32 distance.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "distances.h"
#include "full_vectors.h"
#include "hnswlib.h"
#include "int8.h"

namespace nearline {

class Int8Space : public hnswlib::SpaceInterface<float> {
 public:
  Int8Space(bool ip, size_t dims, Kernel k) : dims_(dims), fn_(ip ? IpInt8Distance(k) : L2Int8Distance(k)) {}
  size_t get_data_size() override { return Int8Bytes(dims_); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return fn_; }
  void* get_dist_func_param() override { return &dims_; }

 private:
  size_t dims_;
  hnswlib::DISTFUNC<float> fn_;
};

struct Quantized {
  Quantized(bool ip, size_t dims, Kernel k, std::unique_ptr<FullVectors> f, size_t rescoreFactor)
      : dims(dims), bytes(Int8Bytes(dims)), exact(ip ? IpDistance(k) : L2Distance(k)), rescore(std::max<size_t>(1, rescoreFactor)), full(std::move(f)) {}

  size_t dims, bytes;
  // The f32 distance, for rescoring and exact scans.
  DistFn exact;
  // A search rescores k * rescore candidates.
  size_t rescore;
  std::unique_ptr<FullVectors> full;

  std::vector<uint8_t> Code(const float* v) const {
    std::vector<uint8_t> out(bytes);
    QuantizeInt8(v, dims, out.data());
    return out;
  }

  // Exact f32 distance from q to label's stored vector; `row` is scratch of dims floats.
  float Distance(const float* q, uint32_t label, float* row) const {
    full->ReadRow(full->RowOf(label), row);
    return exact(q, row, &dims);
  }

  // The k nearest of `n` candidates by exact distance, nearest first, into labels/distances; returns how many.
  size_t Rescore(const float* q, const uint32_t* candidates, size_t n, size_t k, uint32_t* labels, float* distances) const {
    std::vector<float> row(dims);
    std::vector<std::pair<float, uint32_t>> scored(n);
    for (size_t i = 0; i < n; i++) scored[i] = {Distance(q, candidates[i], row.data()), candidates[i]};
    size_t m = std::min(k, n);
    std::partial_sort(scored.begin(), scored.begin() + m, scored.end());
    for (size_t i = 0; i < m; i++) {
      labels[i] = scored[i].second;
      distances[i] = scored[i].first;
    }
    return m;
  }
};

}  // namespace nearline
