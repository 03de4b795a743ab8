#include "io/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/limits.h"
#include "m3/error.h"

namespace m3 {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  check(!in.bad(), path + ": read error");
  return ss.str();
}

MappedFile map_file(const std::string& path) {
  auto fail = [&](const std::string& msg) { return Error(path + ": " + msg + ": " + std::strerror(errno)); };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fail("cannot open");
  struct stat st{};
  if (fstat(fd, &st) != 0) {
    const Error e = fail("cannot stat");
    ::close(fd);
    throw e;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  MappedFile m;
  m.size = uint64_t(st.st_size);
  if (m.size == 0) {
    ::close(fd);
    return m;
  }
  void* p = mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw fail("cannot map");
  const uint64_t size = m.size;
  m.owner = std::shared_ptr<void>(p, [size](void* q) { munmap(q, size); });
  m.data = static_cast<const char*>(p);
  return m;
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  check_json_depth(text, path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed JSON: " + e.what());
  }
}

void check_json_depth(std::string_view text, const std::string& source) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limits::kJsonDepth)
        throw Error(source + ": JSON nested deeper than " + std::to_string(limits::kJsonDepth) +
                    " levels at byte " + std::to_string(i) + " (limit kJsonDepth, src/core/limits.h)");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

}  // namespace m3
