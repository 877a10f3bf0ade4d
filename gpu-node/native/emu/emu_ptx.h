// seventy-emu: the inline-PTX instructions of the kernels, each written from the PTX ISA (release 8.7)
// section it names. The kernels call these under SEVENTY_EMU in place of their asm statements.
#pragma once

#include <stdint.h>

#include "emu_runtime.h"

namespace emu::ptx {

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {d0..d3}, {a0..a3}, {b0,b1}, {c0..c3} with d = c
// (§9.7.14.5.14 "mma"; fragments: §9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point
// type", see mmaCompute in ptx.cpp). A warp-wide collective: every lane of the warp must execute it.
inline void mma_m16n8k16_row_col_f32_bf16_bf16_f32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, const void* site) {
  MmaLane l;
  for (int i = 0; i < 4; i++) {
    l.a[i] = a[i];
    l.c[i] = c[i];
  }
  l.b[0] = b0;
  l.b[1] = b1;
  mmaSync(MmaKind::M16N8K16_BF16_F32, l, site);
  for (int i = 0; i < 4; i++) c[i] = l.c[i];
}

// ld.global.nc.L1::no_allocate.v4.u32 (§9.7.9.9 "ld.global.nc"): a 16-byte load, 16-byte aligned, from
// global memory only (checked: the instrumentation sees it as a 16-byte device read); the cache hint
// has no observable effect. The data must not be written during the kernel (not checked).
inline uint4 ld_global_nc_L1_no_allocate_v4_u32(const void* p) { return *static_cast<const uint4*>(p); }

// ---- ldmatrix ----
// ldmatrix.sync.aligned.m8n8.x{1,2,4}{,.trans}.shared.b16 {d0..d[num-1]}, [p] (§9.7.14.5.15 "Warp-level
// matrix load instruction: ldmatrix"). Lanes 8i..8i+7 give the addresses of rows 0..7 of matrix i (16
// contiguous bytes each, 16-byte aligned, in shared memory); the other lanes' addresses are ignored. Each
// lane reads its own row here, so the emulator's shared-memory checks (initcheck, racecheck, bounds) see
// the access as that lane's; the warp-wide redistribution is a collective (ldmatrixCompute in ptx.cpp).
// A warp-wide collective: every lane of the warp must execute it.
template <int Num, bool Trans>
inline void ldmatrix_m8n8_b16(uint32_t (&d)[Num], const void* p, const void* site) {
  static_assert(Num == 1 || Num == 2 || Num == 4, "ldmatrix .num is .x1, .x2 or .x4");
  const uint3 ti = threadIdx_();
  const dim3 bd = blockDim_();
  const int lane = int((ti.z * bd.y + ti.y) * bd.x + ti.x) % 32;
  MmaLane l{};
  if (lane < 8 * Num) {
    if (!isSharedAddress(p)) fail("memcheck", "ldmatrix at %s: row address %p is not in shared memory", static_cast<const char*>(site), p);
    const uint4 row = *static_cast<const uint4*>(p);
    l.a[0] = row.x;
    l.a[1] = row.y;
    l.a[2] = row.z;
    l.a[3] = row.w;
  }
  constexpr MmaKind kind = Num == 1 ? (Trans ? MmaKind::LDMATRIX_X1_TRANS : MmaKind::LDMATRIX_X1)
                           : Num == 2 ? (Trans ? MmaKind::LDMATRIX_X2_TRANS : MmaKind::LDMATRIX_X2)
                                      : (Trans ? MmaKind::LDMATRIX_X4_TRANS : MmaKind::LDMATRIX_X4);
  mmaSync(kind, l, site);
  for (int i = 0; i < Num; i++) d[i] = l.a[i];
}

// ---- asynchronous copies and programmatic dependent launch ----

// cp.async.{ca,cg}.shared.global [dst], [src], cp-size{, src-size} (§9.7.9.25.3.1 "cp.async"):
// copies cp-size (4, 8 or 16; .cg only 16) bytes from global to shared memory asynchronously; with
// src-size < cp-size only src-size bytes are read and the rest of dst is zero-filled. Both addresses
// must be cp-size aligned. The copy joins the thread's open group and is complete only after a
// cp.async.wait_group / wait_all that covers it (§9.7.9.25.3.3, .4): the emulator performs it there.
template <int CpSize>
inline void cp_async_shared_global(void* dst, const void* src, int srcSize = CpSize) {
  static_assert(CpSize == 4 || CpSize == 8 || CpSize == 16, "cp.async copies 4, 8 or 16 bytes");
  cpAsync(dst, src, CpSize, srcSize);
}
// cp.async.commit_group (§9.7.9.25.3.2): closes the thread's open cp.async's into one group (maybe empty).
inline void cp_async_commit_group() { cpAsyncCommitGroup(); }
// cp.async.wait_group N (§9.7.9.25.3.3): waits until at most N of the thread's most recent groups are
// pending; earlier groups' copies are then complete and visible to the executing thread.
inline void cp_async_wait_group(int n) { cpAsyncWaitGroup(n); }
// cp.async.wait_all (§9.7.9.25.3.3): commit_group followed by wait_group 0.
inline void cp_async_wait_all() {
  cpAsyncCommitGroup();
  cpAsyncWaitGroup(0);
}

// griddepcontrol.wait (§9.7.13.13 "griddepcontrol"): waits until the prerequisite grids in flight have
// completed and their memory operations are visible. Launches run one after another here; a programmatic
// launch's thread that touched the previous kernel's output before this call has already failed.
inline void griddepcontrol_wait() { gridDepWait(); }
// griddepcontrol.launch_dependents (§9.7.13.13): lets the dependent grid launch early; no effect here.
inline void griddepcontrol_launch_dependents() { gridDepLaunchDependents(); }

}  // namespace emu::ptx
