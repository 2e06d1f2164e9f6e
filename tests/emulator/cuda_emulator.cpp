// The emulator's stack switch (see cuda_emulator.h): saves the callee-saved registers on the
// current stack, stores its pointer in *save_sp, and resumes the stack at load_sp.
#include "cuda_emulator.h"

#if defined(EMU_X86_64_SWITCH)
asm(R"(
  .pushsection .text
  .globl emu_switch_stack
  .type emu_switch_stack, @function
emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch_stack, .-emu_switch_stack
  .popsection
)");
#endif
