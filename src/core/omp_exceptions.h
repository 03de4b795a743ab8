// An exception leaving an OpenMP region ends the program (std::terminate), so work inside a
// region runs through OmpExceptions::run, which keeps the first exception thrown (std::bad_alloc
// of a scratch buffer, an m3::Error); once one is kept, the remaining iterations are skipped;
// rethrow() after the region throws it on the calling thread.
#pragma once
#include <atomic>
#include <exception>

namespace m3 {

class OmpExceptions {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed()) return;
    try {
      f();
    } catch (...) {
      capture();
    }
  }
  // The same without a lambda (clang 14 cannot capture in a lambda nested in an OpenMP region of
  // a generic lambda): `if (!errors.failed()) try { ... } catch (...) { errors.capture(); }`.
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  void capture() noexcept {  // inside a catch block
#pragma omp critical(m3_omp_exceptions)
    if (!first_) first_ = std::current_exception();
    failed_.store(true, std::memory_order_relaxed);
  }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::exception_ptr first_;
  std::atomic<bool> failed_{false};
};

}  // namespace m3
