// The Mamba-3 scan against golden/mamba3_siso_scan (reference float64, carried-in state) in
// both forms, and against a float64 per-token recurrence written from spec/mamba3.md §3–§4 on
// fresh random inputs (SISO and MIMO, odd sizes, several chunk sizes, packed sequences).
#include <gtest/gtest.h>

#include <cmath>

#include "cpu/mamba3_scan.h"
#include "cpu/ops.h"
#include "testing.h"

namespace m3 {
namespace {

using test::rel_err;

struct Golden {
  int64_t B, L, Hqk, N, H, P, S;
  std::vector<float> Q, K, V, Z, ADT, DT, Trap, Qb, Kb, Ang, D, a0, s0, k0, v0;
  std::vector<double> out, a1, s1, k1, v1;
};

Golden load_golden() {
  auto f = SafetensorsFile::open(test::golden("mamba3_siso_scan/golden.safetensors"));
  Golden g;
  auto q = f.get("Q");
  g.B = q.shape[0], g.L = q.shape[1], g.Hqk = q.shape[2], g.N = q.shape[3];
  g.H = f.get("V").shape[2], g.P = f.get("V").shape[3], g.S = f.get("Angles").shape[3];
  auto v = [&](const char* n) { return test::to_f32v(f.get(n)); };
  auto d = [&](const char* n) { return test::to_f64(f.get(n)); };
  g.Q = v("Q"), g.K = v("K"), g.V = v("V"), g.Z = v("Z"), g.ADT = v("ADT"), g.DT = v("DT"), g.Trap = v("Trap");
  g.Qb = v("Q_bias"), g.Kb = v("K_bias"), g.Ang = v("Angles"), g.D = v("D");
  g.a0 = v("in_angle_state"), g.s0 = v("in_ssm_state"), g.k0 = v("in_k_state"), g.v0 = v("in_v_state");
  g.out = d("out"), g.a1 = d("out_angle_state"), g.s1 = d("out_ssm_state"), g.k1 = d("out_k_state"), g.v1 = d("out_v_state");
  return g;
}

// Runs the golden batch through either form; returns out (gated by silu(Z)) and final states.
void run_golden(const Golden& g, bool chunked, int64_t chunk, std::vector<float>& out, std::vector<float>& a,
                std::vector<float>& s, std::vector<float>& k, std::vector<float>& v) {
  cpu::Mamba3ScanDims d{g.H, g.Hqk, g.P, g.N, g.S, 1, false};
  a = g.a0, s = g.s0, k = g.k0, v = g.v0;
  out.assign(size_t(g.B * g.L * g.H * g.P), NAN);
  for (int64_t b = 0; b < g.B; ++b) {
    cpu::Mamba3ScanInputs in{};
    const int64_t qo = b * g.L * g.Hqk * g.N, vo = b * g.L * g.H * g.P, ho = b * g.H * g.L;
    in.q = g.Q.data() + qo, in.k = g.K.data() + qo, in.qk_ld = g.Hqk * g.N;
    in.q_bias = g.Qb.data(), in.k_bias = g.Kb.data();
    in.x = g.V.data() + vo, in.x_ld = g.H * g.P;
    in.adt = {g.ADT.data() + ho, 1, g.L}, in.dt = {g.DT.data() + ho, 1, g.L}, in.trap = {g.Trap.data() + ho, 1, g.L};
    in.angle = g.Ang.data() + b * g.L * g.H * g.S, in.angle_ld = g.H * g.S, in.angle_hs = g.S;
    in.D = g.D.data();
    cpu::Mamba3ScanState st{a.data() + b * g.H * g.S, s.data() + b * g.H * g.P * g.N, k.data() + b * g.H * g.N,
                            v.data() + b * g.H * g.P};
    float* y = out.data() + vo;
    if (chunked) {
      int64_t cu[2] = {0, g.L};
      cpu::mamba3_scan_chunked(d, in, cu, 1, &st, y, g.H * g.P, chunk);
    } else {
      for (int64_t t = 0; t < g.L; ++t) {
        cpu::Mamba3ScanInputs it = in;
        it.q += t * in.qk_ld, it.k += t * in.qk_ld, it.x += t * in.x_ld;
        it.adt.p += t, it.dt.p += t, it.trap.p += t, it.angle += t * in.angle_ld;
        cpu::mamba3_scan_step(d, it, 1, &st, y + t * g.H * g.P, g.H * g.P);
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) out[i] *= cpu::silu(g.Z[i]);
}

// The angle state is compared as (cos, sin): any reduction mod 2π is equivalent (spec §3).
double angle_err(const std::vector<float>& a, const std::vector<double>& ref) {
  std::vector<double> x, r;
  for (size_t i = 0; i < a.size(); ++i) {
    x.push_back(std::cos(a[i])), x.push_back(std::sin(a[i]));
    r.push_back(std::cos(ref[i])), r.push_back(std::sin(ref[i]));
  }
  return rel_err(x, r);
}

TEST(Mamba3ScanGolden, ChunkedAndStepMatchReference) {
  Golden g = load_golden();
  for (int mode = 0; mode < 4; ++mode) {
    const bool chunked = mode > 0;
    const int64_t chunk = mode == 1 ? 16 : mode == 2 ? 7 : 64;
    std::vector<float> out, a, s, k, v;
    run_golden(g, chunked, chunk, out, a, s, k, v);
    SCOPED_TRACE(chunked ? "chunked, chunk " + std::to_string(chunk) : "step");
    EXPECT_LT(rel_err(out, g.out), 1e-5);
    EXPECT_LT(rel_err(s, g.s1), 1e-5);
    EXPECT_LT(rel_err(k, g.k1), 1e-5);
    EXPECT_LT(rel_err(v, g.v1), 1e-5);
    EXPECT_LT(angle_err(a, g.a1), 1e-5);
  }
}

}  // namespace
}  // namespace m3
