// Expectation for the bad-input tests: a call must throw m3::Error whose message holds given parts
// (the file, the tensor or field, the defect).
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "m3/error.h"

namespace m3::test {

template <class F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no m3::Error was thrown";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

}  // namespace m3::test
