// safetensors files: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and [begin, end) byte span in the data section, then the data. The reader maps the
// file and validates every field before any tensor is touched; the writer is atomic.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "m3/tensor.h"

namespace m3 {

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws m3::Error naming the file (and tensor) on any defect:
  // truncation, header length past the end, malformed JSON, unknown dtype, shape × dtype size not
  // equal to the byte span, spans outside the data section or overlapping.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // A zero-copy view of the tensor (kept alive by the mapping); throws if absent.
  Tensor get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::shared_ptr<void> map_;  // the mapping; tensors share ownership
  const char* data_ = nullptr;  // start of the data section
  std::vector<std::string> names_;
  std::map<std::string, Tensor> index_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes tensors (any dtype, contiguous) to `path` atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory. A crash leaves the old file or the new one.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Writes `text` to `path` with the same temp-file + fsync + rename discipline.
void write_file_atomic(const std::string& path, const std::string& text);

// A checkpoint directory's tensors: `model.safetensors`, or the shards named by
// `model.safetensors.index.json`, or (in that order of preference) PyTorch's `pytorch_model.bin` or
// the shards named by `pytorch_model.bin.index.json` (io/torch_checkpoint.h). Lookups say which file
// a tensor came from in errors.
class CheckpointTensors {
 public:
  static CheckpointTensors open_dir(const std::string& dir);
  bool has(const std::string& name) const;
  Tensor get(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  struct File {
    std::string path;
    std::map<std::string, Tensor> tensors;  // views that keep their file mapped
  };
  std::vector<File> files_;
  std::map<std::string, size_t> where_;
};

}  // namespace m3
