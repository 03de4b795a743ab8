// pytorch_model.bin: the format of torch.save since PyTorch 1.6 (as mamba_ssm's save_pretrained and
// older Hugging Face checkpoints ship), a ZIP archive of uncompressed entries: ARCHIVE/data.pkl, a
// pickle of the state dict whose tensors refer by key to their storages ARCHIVE/data/KEY. The
// pickle is read by a restricted machine that knows only the opcodes and globals a tensor state
// dict uses (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and _rebuild_parameter, the
// typed storages) and executes nothing: any other opcode or global is an error naming it.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "m3/safetensors.h"

namespace m3 {

// One stored (uncompressed) entry: its bytes [offset, offset + size) in the archive.
struct ZipEntry {
  uint64_t offset = 0, size = 0;
};
// The entries of a ZIP archive of `size` bytes at `data` (ZIP64 included); Error naming `where` on
// any defect: no end record, records or entries outside the archive, compressed entries.
std::map<std::string, ZipEntry> read_zip_directory(const char* data, uint64_t size, const std::string& where);

// A storage named by the pickle: key, element type, element count → a 1-D tensor of it.
using StorageLoader = std::function<Tensor(const std::string& key, DType dtype, int64_t numel)>;
// The state dict (name → tensor, in the pickle's order) of a torch.save pickle.
NamedTensors unpickle_state_dict(std::string_view pickle, const StorageLoader& load, const std::string& where);

// The tensors of a pytorch_model.bin, views into the mapped file where they are contiguous.
NamedTensors read_torch_checkpoint(const std::string& path);

}  // namespace m3
