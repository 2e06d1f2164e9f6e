// A cache of large host blocks for the CPU gathers' outputs (see host_cache_cpu.cpp for why).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace ata_ext {

// An uninitialised contiguous CPU tensor. Blocks of 1 MiB or more come from the cache (fresh ones
// are pre-faulted); smaller ones from PyTorch's CPU allocator.
at::Tensor empty_cached_cpu(at::IntArrayRef sizes, at::ScalarType dtype);

// {bytes held in cached free blocks, the cache's limit in bytes}.
std::vector<int64_t> host_cache_info();

// Frees every cached block now; blocks in use go back to the system when their tensors die.
void empty_host_cache();

}  // namespace ata_ext
