// The host block cache behind the CPU gathers' outputs.
//
// Why: glibc hands allocations above 32 MiB straight to mmap and unmaps them on free, so every
// large fresh tensor faults in each 4 KiB page on its first write. On the 2-core development
// machine that made align_gather of a (16, 8, 196, 768) float32 clip cost 31 ms, of which about
// 5 ms is the copy itself; with a reused block it is the copy. A training loop allocates the same
// aligned / de-aligned shapes every step, so freed blocks are kept (up to a limit) and handed out
// again, as PyTorch's CUDA and pinned-memory allocators do. Fresh blocks are mapped in one
// MADV_POPULATE_WRITE call per thread, cheaper than faulting page by page.
//
// The limit is ATA_EXT_HOST_CACHE_MB (default 1024; 0 keeps nothing), read once; past it the
// least recently freed blocks are released. Tensors made here are ordinary resizable CPU tensors;
// their storage just returns its block to the cache.
#include "cpu/host_cache.h"

#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>

#ifdef __linux__
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace ata_ext {
namespace {

constexpr size_t kMinBytes = size_t{1} << 20;  // below this glibc's heap reuses memory anyway
constexpr size_t kGranule = size_t{2} << 20;   // sizes are rounded up to this, so near sizes share

// Maps [ptr, ptr + bytes) for writing, in parallel (best effort: on kernels before 5.14 the
// first writes fault the pages in instead).
void prefault(void* ptr, size_t bytes) {
#if defined(__linux__)
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE; older libc headers lack the name
  static const int64_t page = sysconf(_SC_PAGESIZE);
  static std::atomic<bool> unsupported{false};
  if (page <= 0 || unsupported.load(std::memory_order_relaxed)) return;
  const int64_t start = (reinterpret_cast<int64_t>(ptr) + page - 1) / page * page;
  const int64_t pages = (reinterpret_cast<int64_t>(ptr) + static_cast<int64_t>(bytes) - start) / page;
  at::parallel_for(0, pages, 256, [&](int64_t begin, int64_t end) {
    if (madvise(reinterpret_cast<void*>(start + begin * page), (end - begin) * page, kPopulateWrite) != 0 &&
        errno == EINVAL) {
      unsupported.store(true, std::memory_order_relaxed);
    }
  });
#else
  (void)ptr;
  (void)bytes;
#endif
}

struct Block {
  void* ptr;
  size_t size;
};

class HostCache final : public c10::Allocator {
 public:
  HostCache() {
    const char* env = std::getenv("ATA_EXT_HOST_CACHE_MB");
    const long long mb = env ? std::atoll(env) : 1024;
    limit_ = mb > 0 ? static_cast<size_t>(mb) << 20 : 0;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n < kMinBytes) return c10::GetCPUAllocator()->allocate(n);
    const size_t size = (n + kGranule - 1) / kGranule * kGranule;
    void* ptr = nullptr;
    size_t in_use = 0, cached = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The most recently freed block of this size (a few hundred blocks at most: a scan is fine).
      auto hit = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->size == size && (hit == free_.end() || it->seq > hit->seq)) hit = it;
      }
      if (hit != free_.end()) {
        ptr = hit->ptr;
        cached_ -= size;
        free_.erase(hit);
      }
      in_use = in_use_ += size;
      cached = cached_;
    }
    if (ptr == nullptr) {
      ptr = c10::alloc_cpu(size);
      prefault(ptr, size);
    }
    // torch.profiler(profile_memory=True) sees these blocks like any other CPU allocation.
    c10::reportMemoryUsageToProfiler(ptr, static_cast<int64_t>(size), in_use, in_use + cached,
                                     c10::Device(c10::DeviceType::CPU));
    return {ptr, new Block{ptr, size}, &HostCache::release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }

  std::vector<int64_t> info() {
    std::lock_guard<std::mutex> lock(mu_);
    return {static_cast<int64_t>(cached_), static_cast<int64_t>(limit_)};
  }

  void clear() {
    std::vector<Cached> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      drop.swap(free_);
      cached_ = 0;
    }
    for (const Cached& c : drop) c10::free_cpu(c.ptr);
  }

  // A child of fork() may inherit mu_ locked by a thread that does not exist there.
  void reset_after_fork() { new (&mu_) std::mutex(); }

  static HostCache& get() {
    static HostCache* cache = [] {
      auto* c = new HostCache();  // never destroyed: tensors may die after static destructors run
#ifdef __linux__
      pthread_atfork(nullptr, nullptr, [] { get().reset_after_fork(); });
#endif
      return c;
    }();
    return *cache;
  }

 private:
  static void release(void* ctx) {
    std::unique_ptr<Block> block(static_cast<Block*>(ctx));
    HostCache& cache = get();
    const bool keep = block->size <= cache.limit_;
    std::vector<void*> evicted;
    size_t in_use = 0, cached = 0;
    {
      std::lock_guard<std::mutex> lock(cache.mu_);
      in_use = cache.in_use_ -= block->size;
      // Least recently freed blocks make room: sizes a program stopped using do not pin the cache.
      while (keep && cache.cached_ + block->size > cache.limit_) {
        auto oldest = std::min_element(cache.free_.begin(), cache.free_.end(),
                                       [](const Cached& a, const Cached& b) { return a.seq < b.seq; });
        evicted.push_back(oldest->ptr);
        cache.cached_ -= oldest->size;
        cache.free_.erase(oldest);
      }
      if (keep) {
        cache.free_.push_back({block->size, block->ptr, ++cache.seq_});
        cache.cached_ += block->size;
      }
      cached = cache.cached_;
    }
    c10::reportMemoryUsageToProfiler(block->ptr, -static_cast<int64_t>(block->size), in_use, in_use + cached,
                                     c10::Device(c10::DeviceType::CPU));
    if (!keep) evicted.push_back(block->ptr);
    for (void* p : evicted) c10::free_cpu(p);
  }

  std::mutex mu_;
  struct Cached {
    size_t size;
    void* ptr;
    uint64_t seq;  // when it was freed: reuse the newest, evict the oldest
  };
  std::vector<Cached> free_;
  uint64_t seq_ = 0;
  size_t cached_ = 0;  // bytes in free_
  size_t in_use_ = 0;  // bytes handed out and not yet released
  size_t limit_ = 0;
};

}  // namespace

at::Tensor empty_cached_cpu(at::IntArrayRef sizes, at::ScalarType dtype) {
  return at::detail::empty_generic(sizes, &HostCache::get(), c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                   at::MemoryFormat::Contiguous);
}

std::vector<int64_t> host_cache_info() { return HostCache::get().info(); }

void empty_host_cache() { HostCache::get().clear(); }

}  // namespace ata_ext
