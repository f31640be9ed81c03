// nearline's HNSW binding: hnswlib's index (the headers hnswlib-node ships) behind an N-API class that
// takes Float32Array without copying and runs searches, inserts and saves on the libuv thread pool,
// so the event loop stays free and concurrent calls use every core on one shared index.

#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "hnswlib.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

using Hnsw = hnswlib::HierarchicalNSW<float>;

struct Shared {
  std::unique_ptr<hnswlib::SpaceInterface<float>> space;
  std::unique_ptr<Hnsw> index;
  size_t dims = 0;
};

// One byte per label; a label past the end is not allowed.
class AllowList : public hnswlib::BaseFilterFunctor {
 public:
  AllowList(const uint8_t* bits, size_t size) : bits_(bits), size_(size) {}
  bool operator()(hnswlib::labeltype label) override { return label < size_ && bits_[label] != 0; }

 private:
  const uint8_t* bits_;
  size_t size_;
};

// A resize reallocates the whole graph, and inserts leave temporaries in per-thread arenas; glibc keeps
// both as resident free memory unless asked to give whole free pages back.
void ReleaseFreePages() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

std::unique_ptr<hnswlib::SpaceInterface<float>> MakeSpace(const std::string& name, size_t dims) {
  if (name == "l2") return std::make_unique<hnswlib::L2Space>(dims);
  if (name == "ip") return std::make_unique<hnswlib::InnerProductSpace>(dims);
  throw std::runtime_error("space must be 'l2' or 'ip'");
}

// hnswlib's searchKnn with the candidate list size passed in instead of read from the index,
// so concurrent searches with different ef never race on setEf.
size_t SearchOne(const Hnsw& h, const float* q, size_t k, size_t ef, hnswlib::BaseFilterFunctor* allow, uint32_t* labels,
                 float* distances) {
  if (h.cur_element_count == 0) return 0;
  hnswlib::tableint cur = h.enterpoint_node_;
  float curdist = h.fstdistfunc_(q, h.getDataByInternalId(cur), h.dist_func_param_);
  for (int level = h.maxlevel_; level > 0; level--) {
    bool changed = true;
    while (changed) {
      changed = false;
      unsigned int* data = h.get_linklist(cur, level);
      int size = h.getListCount(data);
      auto* cands = reinterpret_cast<hnswlib::tableint*>(data + 1);
      for (int i = 0; i < size; i++) {
        float d = h.fstdistfunc_(q, h.getDataByInternalId(cands[i]), h.dist_func_param_);
        if (d < curdist) {
          curdist = d;
          cur = cands[i];
          changed = true;
        }
      }
    }
  }
  auto top = (h.num_deleted_ == 0 && allow == nullptr) ? h.searchBaseLayerST<true>(cur, q, std::max(ef, k), allow)
                                                       : h.searchBaseLayerST<false>(cur, q, std::max(ef, k), allow);
  while (top.size() > k) top.pop();
  size_t n = top.size();
  for (size_t i = n; i-- > 0;) {
    labels[i] = static_cast<uint32_t>(h.getExternalLabel(top.top().second));
    distances[i] = top.top().first;
    top.pop();
  }
  return n;
}

float* FloatData(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  }
  return v.As<Napi::Float32Array>().Data();
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

class SearchWorker : public Napi::AsyncWorker {
 public:
  SearchWorker(Napi::Env env, std::shared_ptr<Shared> s, const float* queries, size_t nq, size_t k, size_t ef,
               const uint8_t* allow, size_t allowSize, const uint32_t* candidates, size_t nCandidates)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        s_(std::move(s)),
        queries_(queries),
        nq_(nq),
        k_(k),
        ef_(ef),
        allow_(allow),
        allowSize_(allowSize),
        candidates_(candidates),
        nCandidates_(nCandidates),
        labels_(nq * k),
        distances_(nq * k),
        counts_(nq) {}

  Pinned pinned;
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      const Hnsw& h = *s_->index;
      if (candidates_ != nullptr) {
        Exact(h);
        return;
      }
      std::unique_ptr<AllowList> allow;
      if (allow_ != nullptr) allow = std::make_unique<AllowList>(allow_, allowSize_);
      for (size_t i = 0; i < nq_; i++) {
        counts_[i] = static_cast<uint32_t>(
            SearchOne(h, queries_ + i * s_->dims, k_, ef_, allow.get(), &labels_[i * k_], &distances_[i * k_]));
      }
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    auto labels = Napi::Uint32Array::New(env, labels_.size());
    auto distances = Napi::Float32Array::New(env, distances_.size());
    auto counts = Napi::Uint32Array::New(env, counts_.size());
    std::memcpy(labels.Data(), labels_.data(), labels_.size() * sizeof(uint32_t));
    std::memcpy(distances.Data(), distances_.data(), distances_.size() * sizeof(float));
    std::memcpy(counts.Data(), counts_.data(), counts_.size() * sizeof(uint32_t));
    auto out = Napi::Object::New(env);
    out.Set("labels", labels);
    out.Set("distances", distances);
    out.Set("counts", counts);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  // Brute force over the given labels, for filters so selective that a graph walk would mostly meet rejects.
  void Exact(const Hnsw& h) {
    std::vector<std::pair<hnswlib::tableint, uint32_t>> ids;
    ids.reserve(nCandidates_);
    {
      std::unique_lock<std::mutex> lock(h.label_lookup_lock);
      for (size_t i = 0; i < nCandidates_; i++) {
        auto it = h.label_lookup_.find(candidates_[i]);
        if (it != h.label_lookup_.end() && !h.isMarkedDeleted(it->second)) ids.emplace_back(it->second, candidates_[i]);
      }
    }
    std::vector<std::pair<float, uint32_t>> scored(ids.size());
    for (size_t qi = 0; qi < nq_; qi++) {
      const float* q = queries_ + qi * s_->dims;
      for (size_t i = 0; i < ids.size(); i++) {
        scored[i] = {h.fstdistfunc_(q, h.getDataByInternalId(ids[i].first), h.dist_func_param_), ids[i].second};
      }
      size_t n = std::min(k_, scored.size());
      std::partial_sort(scored.begin(), scored.begin() + n, scored.end());
      for (size_t i = 0; i < n; i++) {
        labels_[qi * k_ + i] = scored[i].second;
        distances_[qi * k_ + i] = scored[i].first;
      }
      counts_[qi] = static_cast<uint32_t>(n);
    }
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Shared> s_;
  const float* queries_;
  size_t nq_, k_, ef_;
  const uint8_t* allow_;
  size_t allowSize_;
  const uint32_t* candidates_;
  size_t nCandidates_;
  std::vector<uint32_t> labels_;
  std::vector<float> distances_;
  std::vector<uint32_t> counts_;
};

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
    auto work = [&] {
      for (size_t i; (i = next++) < n_;) {
        try {
          s_->index->addPoint(vectors_ + i * s_->dims, labels_[i]);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(errorLock);
          if (error.empty()) error = e.what();
        }
      }
    };
    size_t extra = std::min(threads_, std::max<size_t>(1, n_ / 64)) - 1;
    std::vector<std::thread> pool;
    for (size_t t = 0; t < extra; t++) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    ReleaseFreePages();
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

class SaveWorker : public Napi::AsyncWorker {
 public:
  SaveWorker(Napi::Env env, std::shared_ptr<Shared> s, std::string path)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), s_(std::move(s)), path_(std::move(path)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      s_->index->saveIndex(path_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Shared> s_;
  std::string path_;
};

class Index : public Napi::ObjectWrap<Index> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "Index",
                                      {
                                          InstanceMethod<&Index::Capacity>("capacity"),
                                          InstanceMethod<&Index::Resize>("resize"),
                                          InstanceMethod<&Index::Add>("add"),
                                          InstanceMethod<&Index::MarkDelete>("markDelete"),
                                          InstanceMethod<&Index::Vectors>("vectors"),
                                          InstanceMethod<&Index::Search>("search"),
                                          InstanceMethod<&Index::Exact>("exact"),
                                          InstanceMethod<&Index::Save>("save"),
                                      });
    exports.Set("Index", ctor);
    return exports;
  }

  // new Index(space, dims, capacity, M, efConstruction, seed) or new Index(space, dims, path)
  explicit Index(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Index>(info), s_(std::make_shared<Shared>()) {
    Napi::Env env = info.Env();
    try {
      s_->dims = info[1].As<Napi::Number>().Uint32Value();
      s_->space = MakeSpace(info[0].As<Napi::String>().Utf8Value(), s_->dims);
      if (info[2].IsString()) {
        s_->index = std::make_unique<Hnsw>(s_->space.get(), info[2].As<Napi::String>().Utf8Value());
        if (s_->index->data_size_ != s_->dims * sizeof(float)) throw std::runtime_error("index file has other dimensions");
      } else {
        s_->index = std::make_unique<Hnsw>(s_->space.get(), info[2].As<Napi::Number>().Uint32Value(),
                                           info[3].As<Napi::Number>().Uint32Value(), info[4].As<Napi::Number>().Uint32Value(),
                                           info[5].As<Napi::Number>().Uint32Value());
      }
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

 private:
  Napi::Value Capacity(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(s_->index->max_elements_));
  }

  Napi::Value Resize(const Napi::CallbackInfo& info) {
    Guard(info.Env(), [&] {
      s_->index->resizeIndex(info[0].As<Napi::Number>().Uint32Value());
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
    Guard(info.Env(), [&] { s_->index->markDelete(info[0].As<Napi::Number>().Uint32Value()); });
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
      std::memcpy(out + i * s_->dims, h.getDataByInternalId(it->second), s_->dims * sizeof(float));
    }
    return info.Env().Undefined();
  }

  // search(queries: Float32Array, k, ef, allow?: Uint8Array): Promise<{labels, distances, counts}>
  Napi::Value Search(const Napi::CallbackInfo& info) {
    const float* queries = FloatData(info[0], "queries");
    size_t nq = info[0].As<Napi::Float32Array>().ElementLength() / s_->dims;
    const uint8_t* allow = nullptr;
    size_t allowSize = 0;
    if (info.Length() > 3 && info[3].IsTypedArray()) {
      auto a = info[3].As<Napi::Uint8Array>();
      allow = a.Data();
      allowSize = a.ElementLength();
    }
    auto* w = new SearchWorker(info.Env(), s_, queries, nq, info[1].As<Napi::Number>().Uint32Value(),
                               info[2].As<Napi::Number>().Uint32Value(), allow, allowSize, nullptr, 0);
    w->pinned.Pin(info[0]);
    if (allow != nullptr) w->pinned.Pin(info[3]);
    w->Queue();
    return w->Promise();
  }

  // exact(queries: Float32Array, k, candidates: Uint32Array): Promise<{labels, distances, counts}>
  Napi::Value Exact(const Napi::CallbackInfo& info) {
    const float* queries = FloatData(info[0], "queries");
    size_t nq = info[0].As<Napi::Float32Array>().ElementLength() / s_->dims;
    auto candidates = info[2].As<Napi::Uint32Array>();
    auto* w = new SearchWorker(info.Env(), s_, queries, nq, info[1].As<Napi::Number>().Uint32Value(), 0, nullptr, 0,
                               candidates.Data(), candidates.ElementLength());
    w->pinned.Pin(info[0]);
    w->pinned.Pin(info[2]);
    w->Queue();
    return w->Promise();
  }

  Napi::Value Save(const Napi::CallbackInfo& info) {
    auto* w = new SaveWorker(info.Env(), s_, info[0].As<Napi::String>().Utf8Value());
    w->Queue();
    return w->Promise();
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // glibc raises its mmap threshold after big blocks are freed, so the graph's reallocations as an index grows
  // land in the heap and their old copies stay resident (measured: ~1.8x the index). A fixed threshold keeps
  // every block of 1 MiB or more in its own mapping, which realloc moves with mremap and free returns at once.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  return Index::Init(env, exports);
}

}  // namespace

NODE_API_MODULE(nearline_hnsw, Init)
