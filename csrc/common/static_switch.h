// Turns a runtime flag into a compile-time constant, so one kernel template serves both cases
// instead of two copies of the kernel (the pattern of flash-attention's static_switch.h).
//   BOOL_SWITCH(use_shared, kShared, [&] { kernel<kShared><<<...>>>(...); });
#pragma once

#define BOOL_SWITCH(COND, CONST_NAME, ...)      \
  [&] {                                         \
    if (COND) {                                 \
      constexpr static bool CONST_NAME = true;  \
      return __VA_ARGS__();                     \
    } else {                                    \
      constexpr static bool CONST_NAME = false; \
      return __VA_ARGS__();                     \
    }                                           \
  }()
