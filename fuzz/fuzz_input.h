// Shared by the libFuzzer harnesses: fuzzer bytes as a file the loaders can open by path (an
// in-memory file, so that runs touch no disk), and a private directory for multi-file inputs.
#pragma once
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "m3/error.h"

namespace m3::fuzz {

// The bytes as a file at /proc/self/fd/N, closed (and gone) with the object.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) : fd_(memfd_create("m3_fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += size_t(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// A directory of this process's own under /dev/shm (tmpfs), created once, removed at exit. (The
// name is never destroyed: the exit handler runs after static destructors registered later.)
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    auto* d = new std::string("/dev/shm/m3_fuzz_XXXXXX");
    if (!mkdtemp(d->data())) std::abort();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return *dir;
}

inline void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
}

// Splits fuzzer input at the first occurrence of `sep` (the rest after it; empty when absent).
inline std::pair<std::string_view, std::string_view> split(std::string_view s, std::string_view sep) {
  const size_t at = s.find(sep);
  if (at == std::string_view::npos) return {s, {}};
  return {s.substr(0, at), s.substr(at + sep.size())};
}

// Runs `f`; an m3::Error is the expected answer to bad input. Anything else escapes and libFuzzer
// reports it as a crash (the CLI would print "internal error").
template <class F>
void expect_only_m3_errors(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

}  // namespace m3::fuzz
