// Range checks for numeric flags with readable messages: "--top-p: must be in (0, 1], found 2"
// (CLI11's own NonNegativeNumber prints "0.000000 to 1797693134862315708...").
#pragma once
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <string>

namespace m3::cli {

// A finite number in [lo, hi], or (lo, hi] when open_low.
inline CLI::Validator between(double lo, double hi, bool open_low = false) {
  auto show = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.15g", v);
    return std::string(b);
  };
  const std::string range = (open_low ? "(" : "[") + show(lo) + ", " + show(hi) + "]";
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v)) return "'" + s + "' is not a number";
        const bool ok = std::isfinite(v) && (open_low ? v > lo : v >= lo) && v <= hi;
        return ok ? "" : "must be in " + range + ", found " + s;
      },
      "in " + range);
}

}  // namespace m3::cli
