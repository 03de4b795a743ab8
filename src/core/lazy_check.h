// check() with a lazily built message: for checks run once per element, token or entry, where
// building a message that good input never shows costs more than the check itself (issue 11:
// loading a checkpoint spent minutes formatting messages nobody saw).
#pragma once
#include <string>
#include <type_traits>

#include "m3/error.h"

namespace m3 {

// Throws m3::Error with make_msg() when cond is false; make_msg runs only then.
template <class F>
  requires std::is_invocable_r_v<std::string, F&>
inline void check(bool cond, F&& make_msg) {
  if (!cond) [[unlikely]] throw Error(make_msg());
}

}  // namespace m3
