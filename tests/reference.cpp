#include "reference.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace m3::ref {

namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double silu(double x) { return x * sigmoid(x); }
double softplus(double x) { return x > 30.0 ? x : std::log1p(std::exp(x)); }

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("reference: " + what);
}

const Vec& param(const Params& p, const std::string& name, size_t size) {
  auto it = p.find(name);
  require(it != p.end(), "missing parameter " + name);
  require(it->second.size() == size, "parameter " + name + " has " + std::to_string(it->second.size()) +
                                         " values, expected " + std::to_string(size));
  return it->second;
}

// RMSNorm of one vector of length n (no weight).
Vec rms_normalised(const double* v, int64_t n, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += v[i] * v[i];
  const double r = 1.0 / std::sqrt(ss / double(n) + eps);
  Vec o(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) o[size_t(i)] = v[i] * r;
  return o;
}

// (a, b) ↦ (a cos θ − b sin θ, a sin θ + b cos θ) on elements i0, i1 of v.
void rotate_pair(double* v, int64_t i0, int64_t i1, double theta) {
  const double a = v[i0], b = v[i1];
  v[i0] = a * std::cos(theta) - b * std::sin(theta);
  v[i1] = a * std::sin(theta) + b * std::cos(theta);
}

}  // namespace

Vec widen(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

Params widen(const ParamMap& p) {
  Params r;
  for (const auto& [name, t] : p) r[name] = Vec(t.f32(), t.f32() + t.numel());
  return r;
}

Vec linear(const Vec& x, const Vec& W, const Vec& bias, int64_t T, int64_t in, int64_t out) {
  require(x.size() == size_t(T * in) && W.size() == size_t(out * in) && (bias.empty() || bias.size() == size_t(out)),
          "linear: sizes");
  Vec y(static_cast<size_t>(T * out));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias.empty() ? 0.0 : bias[size_t(o)];
      for (int64_t i = 0; i < in; ++i) acc += x[size_t(t * in + i)] * W[size_t(o * in + i)];
      y[size_t(t * out + o)] = acc;
    }
  return y;
}

Vec rmsnorm(const Vec& x, const Vec& w, int64_t T, int64_t D, double eps) {
  Vec y(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    Vec n = rms_normalised(x.data() + t * D, D, eps);
    for (int64_t i = 0; i < D; ++i) y[size_t(t * D + i)] = n[size_t(i)] * w[size_t(i)];
  }
  return y;
}

Vec layernorm(const Vec& x, const Vec& w, const Vec& b, int64_t T, int64_t D, double eps) {
  Vec y(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    const double* r = x.data() + t * D;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < D; ++i) mean += r[i];
    mean /= double(D);
    for (int64_t i = 0; i < D; ++i) var += (r[i] - mean) * (r[i] - mean);
    var /= double(D);
    for (int64_t i = 0; i < D; ++i)
      y[size_t(t * D + i)] = (r[i] - mean) / std::sqrt(var + eps) * w[size_t(i)] + b[size_t(i)];
  }
  return y;
}

Vec gated_rmsnorm(const Vec& y, const Vec& z, const Vec& w, int64_t T, int64_t D, int64_t group, double eps,
                  bool norm_before_gate) {
  require(D % group == 0, "gated_rmsnorm: group does not divide D");
  Vec out(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t g0 = 0; g0 < D; g0 += group) {
      Vec v(static_cast<size_t>(group));
      for (int64_t i = 0; i < group; ++i) {
        const size_t k = size_t(t * D + g0 + i);
        v[size_t(i)] = norm_before_gate ? y[k] : y[k] * silu(z[k]);
      }
      Vec n = rms_normalised(v.data(), group, eps);
      for (int64_t i = 0; i < group; ++i) {
        const size_t k = size_t(t * D + g0 + i);
        out[k] = n[size_t(i)] * w[size_t(g0 + i)] * (norm_before_gate ? silu(z[k]) : 1.0);
      }
    }
  return out;
}

Vec silu_gate(const Vec& a, const Vec& b) {
  Vec o(a.size());
  for (size_t i = 0; i < a.size(); ++i) o[i] = a[i] * silu(b[i]);
  return o;
}

Vec causal_conv1d(const Vec& x, int64_t L, int64_t C, const Vec& w, const Vec& bias, int64_t W, Vec& window,
                  bool silu_out) {
  // input(t, c) for t in [−W, L): the window before the sequence, then x.
  auto input = [&](int64_t t, int64_t c) { return t < 0 ? window[size_t(c * W + W + t)] : x[size_t(t * C + c)]; };
  Vec u(static_cast<size_t>(L * C));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double acc = bias.empty() ? 0.0 : bias[size_t(c)];
      for (int64_t k = 0; k < W; ++k) acc += w[size_t(c * W + k)] * input(t - (W - 1) + k, c);
      u[size_t(t * C + c)] = silu_out ? silu(acc) : acc;
    }
  Vec next(window.size());
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < W; ++k) next[size_t(c * W + k)] = input(L - W + k, c);
  window = next;
  return u;
}

Vec gated_mlp(const Vec& x, const Params& p, int64_t T, int64_t d_model, int64_t hidden) {
  Vec h = linear(x, param(p, "fc1.weight", size_t(2 * hidden * d_model)), {}, T, d_model, 2 * hidden);
  Vec a(static_cast<size_t>(T * hidden));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < hidden; ++i)
      a[size_t(t * hidden + i)] = h[size_t(t * 2 * hidden + i)] * silu(h[size_t(t * 2 * hidden + hidden + i)]);
  return linear(a, param(p, "fc2.weight", size_t(d_model * hidden)), {}, T, hidden, d_model);
}

namespace {

// The sizes of spec/mamba3.md §1–§2, derived from the primary hyperparameters.
struct Mamba3Sizes {
  int64_t N, P, G, R, DI, H, S, D_in;
  Mamba3Sizes(const Mamba3Config& c, int64_t d_model) {
    N = c.d_state, P = c.headdim, G = c.ngroups, R = c.is_mimo ? c.mimo_rank : 1;
    DI = c.expand * d_model;
    require(DI % P == 0, "headdim does not divide d_inner");
    H = DI / P;
    require(H % G == 0, "ngroups does not divide nheads");
    int64_t m = int64_t(std::floor(double(N) * c.rope_fraction));
    if (m % 2) m -= 1;
    S = m / 2;
    D_in = 2 * DI + 2 * N * G * R + 3 * H + S;
  }
};

}  // namespace

Mamba3State mamba3_zero_state(const Mamba3Config& c, int64_t d_model) {
  Mamba3Sizes s(c, d_model);
  return {Vec(size_t(s.H * s.S)), Vec(size_t(s.H * s.P * s.N)), Vec(size_t(s.R * s.H * s.N)), Vec(size_t(s.H * s.P))};
}

Vec mamba3(const Mamba3Config& c, int64_t d_model, const Params& p, const Vec& x, int64_t L, Mamba3State& st) {
  const Mamba3Sizes z(c, d_model);
  const int64_t N = z.N, P = z.P, G = z.G, R = z.R, DI = z.DI, H = z.H, S = z.S;
  const Vec& W_in = param(p, "in_proj.weight", size_t(z.D_in * d_model));
  const Vec& dt_bias = param(p, "dt_bias", size_t(H));
  const Vec& B_bias = param(p, "B_bias", size_t(H * R * N));
  const Vec& C_bias = param(p, "C_bias", size_t(H * R * N));
  const Vec& B_w = param(p, "B_norm.weight", size_t(N));
  const Vec& C_w = param(p, "C_norm.weight", size_t(N));
  const Vec& Dp = param(p, "D", size_t(H));
  const Vec& W_out = param(p, "out_proj.weight", size_t(d_model * DI));
  const Vec ones_hrp(size_t(H * R * P), 1.0);
  const Vec& mimo_x = c.is_mimo ? param(p, "mimo_x", size_t(H * R * P)) : ones_hrp;
  const Vec& mimo_z = c.is_mimo ? param(p, "mimo_z", size_t(H * R * P)) : ones_hrp;
  const Vec& mimo_o = c.is_mimo ? param(p, "mimo_o", size_t(H * R * P)) : ones_hrp;
  const Vec* norm_w = c.is_outproj_norm ? &param(p, "norm.weight", size_t(DI)) : nullptr;
  require(st.angle.size() == size_t(H * S) && st.ssm.size() == size_t(H * P * N) && st.k.size() == size_t(R * H * N) &&
              st.v.size() == size_t(H * P),
          "mamba3: state sizes");

  // in_proj split (§2): z, x, B [R, G, N], C [R, G, N], dd_dt, dd_A, trap, angle.
  const int64_t oz = 0, ox = DI, oB = 2 * DI, oC = oB + R * G * N, odt = oC + R * G * N, oA = odt + H, otrap = oA + H,
                oang = otrap + H;
  Vec proj = linear(x, W_in, {}, L, d_model, z.D_in);
  Vec o_all(static_cast<size_t>(L * DI));
  for (int64_t t = 0; t < L; ++t) {
    const double* u = proj.data() + t * z.D_in;
    double* o = o_all.data() + t * DI;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      // §3: dt, A (heavy-tail activation, floored), λ.
      const double dt = softplus(u[odt + h] + dt_bias[size_t(h)]);
      const double a = u[oA + h];
      const double A = std::min(-(a >= 0 ? 1.0 + a : 1.0 / (1.0 - a)), -c.A_floor);
      const double lam = sigmoid(u[otrap + h]);
      // θ_t = θ_{t−1} + π tanh(angle) dt.
      double* theta = st.angle.data() + h * S;
      for (int64_t j = 0; j < S; ++j) theta[j] += std::numbers::pi * std::tanh(u[oang + j]) * dt;
      // k_r = RMSNorm(B[r, g]) ⊙ B_norm.weight + B_bias[h, r] (q likewise with C), then rotated.
      const size_t nR = static_cast<size_t>(R);
      std::vector<Vec> q(nR), k(nR), v(nR), zr(nR), vprev(nR);
      for (int64_t r = 0; r < R; ++r) {
        Vec kn = rms_normalised(u + oB + (r * G + g) * N, N, 1e-5);
        Vec qn = rms_normalised(u + oC + (r * G + g) * N, N, 1e-5);
        for (int64_t n = 0; n < N; ++n) {
          kn[size_t(n)] = kn[size_t(n)] * B_w[size_t(n)] + B_bias[size_t((h * R + r) * N + n)];
          qn[size_t(n)] = qn[size_t(n)] * C_w[size_t(n)] + C_bias[size_t((h * R + r) * N + n)];
        }
        for (int64_t j = 0; j < S; ++j) {
          // SISO pairs (2j, 2j+1); MIMO pairs (j, j + N/2).
          const int64_t i0 = c.is_mimo ? j : 2 * j, i1 = c.is_mimo ? j + N / 2 : 2 * j + 1;
          rotate_pair(kn.data(), i0, i1, theta[j]);
          rotate_pair(qn.data(), i0, i1, theta[j]);
        }
        k[size_t(r)] = kn;
        q[size_t(r)] = qn;
        for (int64_t pp = 0; pp < P; ++pp) {
          const size_t m = size_t((h * R + r) * P + pp);
          v[size_t(r)].push_back(u[ox + h * P + pp] * mimo_x[m]);
          vprev[size_t(r)].push_back(st.v[size_t(h * P + pp)] * mimo_x[m]);
          zr[size_t(r)].push_back(u[oz + h * P + pp] * mimo_z[m]);
        }
      }
      // §4: H_t = α H + β Σ_r v_{t−1,r} k̃_{t−1,r}ᵀ + γ Σ_r v_{t,r} k̃_{t,r}ᵀ.
      const double alpha = std::exp(A * dt), beta = (1 - lam) * dt * alpha, gamma = lam * dt;
      double* Hs = st.ssm.data() + h * P * N;
      for (int64_t pp = 0; pp < P; ++pp)
        for (int64_t n = 0; n < N; ++n) {
          double acc = alpha * Hs[pp * N + n];
          for (int64_t r = 0; r < R; ++r)
            acc += beta * vprev[size_t(r)][size_t(pp)] * st.k[size_t((r * H + h) * N + n)] +
                   gamma * v[size_t(r)][size_t(pp)] * k[size_t(r)][size_t(n)];
          Hs[pp * N + n] = acc;
        }
      // y_r = H q̃_r + D v_r; o = Σ_r mimo_o ⊙ (y_r or its per-head RMSNorm) ⊙ silu(z_r).
      for (int64_t pp = 0; pp < P; ++pp) o[h * P + pp] = 0;
      for (int64_t r = 0; r < R; ++r) {
        Vec y(static_cast<size_t>(P));
        for (int64_t pp = 0; pp < P; ++pp) {
          double acc = 0;
          for (int64_t n = 0; n < N; ++n) acc += Hs[pp * N + n] * q[size_t(r)][size_t(n)];
          y[size_t(pp)] = acc + Dp[size_t(h)] * v[size_t(r)][size_t(pp)];
        }
        if (norm_w) {
          y = rms_normalised(y.data(), P, 1e-5);
          for (int64_t pp = 0; pp < P; ++pp) y[size_t(pp)] *= (*norm_w)[size_t(h * P + pp)];
        }
        for (int64_t pp = 0; pp < P; ++pp)
          o[h * P + pp] += mimo_o[size_t((h * R + r) * P + pp)] * y[size_t(pp)] * silu(zr[size_t(r)][size_t(pp)]);
      }
      // §5: the state keeps the rotated keys and the unprojected values of this token.
      for (int64_t r = 0; r < R; ++r)
        std::copy(k[size_t(r)].begin(), k[size_t(r)].end(), st.k.begin() + (r * H + h) * N);
      std::copy(u + ox + h * P, u + ox + (h + 1) * P, st.v.begin() + h * P);
    }
  }
  return linear(o_all, W_out, {}, L, DI, d_model);
}

Vec attention(const AttnConfig& c, int64_t d_model, const Params& p, const Vec& x, int64_t L, AttnState& st,
              int64_t d_out) {
  const int64_t out = d_out > 0 ? d_out : d_model;
  const int64_t hd = c.head_dim, nh = c.num_heads, nkv = c.num_heads_kv, qkv = hd * (nh + 2 * nkv);
  const int64_t mlp = c.mlp_dim, in_dim = qkv + mlp, ctx_dim = nh * hd + mlp / 2, W = c.d_conv, rd = c.rotary_emb_dim;
  const Vec none;
  Vec proj = linear(x, param(p, "in_proj.weight", size_t(in_dim * d_model)),
                    c.qkv_proj_bias ? param(p, "in_proj.bias", size_t(in_dim)) : none, L, d_model, in_dim);
  const double scale = c.softmax_scale > 0 ? c.softmax_scale : 1.0 / std::sqrt(double(hd));
  // Rotary at absolute position pos on the first rd dims of a head: pairs (j, j + rd/2), or
  // (2j, 2j + 1) when interleaved, by pos · base^(−2j/rd).
  auto rotary = [&](double* head, int64_t pos) {
    for (int64_t j = 0; j < rd / 2; ++j) {
      const double theta = double(pos) * std::pow(c.rotary_emb_base, -2.0 * double(j) / double(rd));
      if (c.rotary_emb_interleaved)
        rotate_pair(head, 2 * j, 2 * j + 1, theta);
      else
        rotate_pair(head, j, j + rd / 2, theta);
    }
  };
  const int64_t past = int64_t(st.keys.size());
  std::vector<Vec> queries;
  for (int64_t t = 0; t < L; ++t) {
    const double* row = proj.data() + t * in_dim;
    st.qkv_in.emplace_back(row, row + qkv);
    Vec u(row, row + qkv);
    if (W > 0) {  // depthwise causal conv over all inputs so far (zeros before the sequence)
      const Vec& w = param(p, "conv1d.weight", size_t(qkv * W));
      const Vec& b = param(p, "conv1d.bias", size_t(qkv));
      const int64_t now = int64_t(st.qkv_in.size()) - 1;
      for (int64_t ch = 0; ch < qkv; ++ch) {
        double acc = b[size_t(ch)];
        for (int64_t k = 0; k < W; ++k) {
          const int64_t s = now - (W - 1) + k;
          if (s >= 0) acc += w[size_t(ch * W + k)] * st.qkv_in[size_t(s)][size_t(ch)];
        }
        u[size_t(ch)] = acc;
      }
    }
    for (int64_t h = 0; h < nh + nkv; ++h) rotary(u.data() + h * hd, past + t);  // q heads, then k heads
    queries.emplace_back(u.begin(), u.begin() + nh * hd);
    st.keys.emplace_back(u.begin() + nh * hd, u.begin() + (nh + nkv) * hd);
    st.values.emplace_back(u.begin() + (nh + nkv) * hd, u.end());
  }
  Vec ctx(static_cast<size_t>(L * ctx_dim));
  for (int64_t t = 0; t < L; ++t) {
    const int64_t visible = c.causal ? past + t + 1 : past + L;
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t kvh = h / (nh / nkv);
      Vec s(static_cast<size_t>(visible));
      double mx = -INFINITY;
      for (int64_t j = 0; j < visible; ++j) {
        double acc = 0;
        for (int64_t d = 0; d < hd; ++d)
          acc += queries[size_t(t)][size_t(h * hd + d)] * st.keys[size_t(j)][size_t(kvh * hd + d)];
        s[size_t(j)] = acc * scale;
        mx = std::max(mx, s[size_t(j)]);
      }
      double sum = 0;
      for (double& e : s) sum += (e = std::exp(e - mx));
      for (int64_t d = 0; d < hd; ++d) {
        double acc = 0;
        for (int64_t j = 0; j < visible; ++j) acc += s[size_t(j)] / sum * st.values[size_t(j)][size_t(kvh * hd + d)];
        ctx[size_t(t * ctx_dim + h * hd + d)] = acc;
      }
    }
    // The MLP branch: [up | gate] → up ⊙ silu(gate), after the attention context.
    const double* m = proj.data() + t * in_dim + qkv;
    for (int64_t i = 0; i < mlp / 2; ++i) ctx[size_t(t * ctx_dim + nh * hd + i)] = m[i] * silu(m[mlp / 2 + i]);
  }
  return linear(ctx, param(p, "out_proj.weight", size_t(out * ctx_dim)),
                c.out_proj_bias ? param(p, "out_proj.bias", size_t(out)) : none, L, ctx_dim, out);
}

void ssd_token(int64_t H, int64_t G, int64_t P, int64_t N, const double* x, const double* B, const double* C,
               const double* dt, const double* A, const Vec& D, double* S, double* y) {
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / (H / G);
    const double a = std::exp(A[h] * dt[h]);
    for (int64_t p = 0; p < P; ++p) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) {
        double& s = S[(h * P + p) * N + n];
        s = a * s + dt[h] * x[h * P + p] * B[g * N + n];
        acc += s * C[g * N + n];
      }
      const double d = D.size() == size_t(H) ? D[size_t(h)] : D[size_t(h * P + p)];
      y[h * P + p] = acc + d * x[h * P + p];
    }
  }
}

Vec mamba2(const Mamba2Config& c, int64_t d_model, const Params& p, const Vec& x, int64_t L, Vec& conv, Vec& ssm) {
  const Mamba2Sizes s(c, d_model);
  auto get_or_empty = [&](const std::string& name) { return p.count(name) ? p.at(name) : Vec{}; };
  auto get = [&](const std::string& name) -> const Vec& { return p.at(name); };
  const Vec zx = linear(x, get("in_proj.weight"), get_or_empty("in_proj.bias"), L, d_model, s.D_in);
  const Vec& conv_w = get("conv1d.weight");
  const Vec conv_b = get_or_empty("conv1d.bias");
  const Vec &dt_bias = get("dt_bias"), &A_log = get("A_log"), &D = get("D");
  Vec o(static_cast<size_t>(L * s.DI));
  for (int64_t t = 0; t < L; ++t) {
    const double* row = zx.data() + t * s.D_in;
    const double *z0 = row, *x0 = row + s.DM, *z = row + 2 * s.DM, *xbc = z + s.DS, *dt_raw = xbc + s.CD;
    // §3.1 / §4: shift the window, append this token's xBC, u = silu(bias + Σ_k w[k] window[k]).
    Vec u(static_cast<size_t>(s.CD));
    for (int64_t ch = 0; ch < s.CD; ++ch) {
      double* win = conv.data() + ch * s.W;
      std::rotate(win, win + 1, win + s.W);
      win[s.W - 1] = xbc[ch];
      double acc = conv_b.empty() ? 0.0 : conv_b[size_t(ch)];
      for (int64_t k = 0; k < s.W; ++k) acc += conv_w[size_t(ch * s.W + k)] * win[k];
      u[size_t(ch)] = silu(acc);
    }
    // §3.2: dt = clamp(softplus(dt + dt_bias), dt_limit); A = −exp(A_log).
    Vec dt(static_cast<size_t>(s.H)), A(static_cast<size_t>(s.H));
    for (int64_t h = 0; h < s.H; ++h) {
      dt[size_t(h)] = std::clamp(softplus(dt_raw[h] + dt_bias[size_t(h)]), c.dt_limit_min, c.dt_limit_max);
      A[size_t(h)] = -std::exp(A_log[size_t(h)]);
    }
    // §3.3: the recurrence; u = [x | B | C].
    Vec y(static_cast<size_t>(s.DS));
    ssd_token(s.H, s.G, s.P, s.N, u.data(), u.data() + s.DS, u.data() + s.DS + s.GN, dt.data(), A.data(), D,
              ssm.data(), y.data());
    // §3.4: gated RMSNorm per group of DS/G channels (§5, Hugging Face: over all DS), or y ⊙ silu(z).
    const Vec zv(z, z + s.DS);
    const Vec gated = c.rmsnorm ? gated_rmsnorm(y, zv, get("norm.weight"), 1, s.DS,
                                                     c.norm_per_group ? s.DS / s.G : s.DS, c.norm_eps,
                                                     c.norm_before_gate)
                                : silu_gate(y, zv);
    // §3.5: [silu(z0) ⊙ x0 | out].
    double* orow = o.data() + t * s.DI;
    for (int64_t i = 0; i < s.DM; ++i) orow[i] = x0[i] * silu(z0[i]);
    std::copy(gated.begin(), gated.end(), orow + s.DM);
  }
  return linear(o, get("out_proj.weight"), get_or_empty("out_proj.bias"), L, s.DI, d_model);
}

}  // namespace m3::ref
