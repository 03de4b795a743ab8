// `m3 logits` on a Hugging Face FalconMamba directory (spec/mamba1.md §5) with input_ids int64 or
// int32 stored at an odd offset of the safetensors data section (the tool must not read them
// through a misaligned typed pointer: the sanitizer build traps that), against the golden logits;
// and the error for input_ids of another integer dtype.
#include <gtest/gtest.h>

#include "golden_model.h"
#include "run_m3.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

// Runs `m3 logits DIR --input IN --output OUT`; its exit status, stderr in `err`.
int m3_logits(const std::string& dir, const std::string& in, const std::string& out, const test::TempDir& tmp,
              std::string& err) {
  const test::Result r = test::run_m3("logits " + test::quote(dir) + " --input " + test::quote(in) + " --output " +
                                          test::quote(out),
                                      tmp);
  err = r.err;
  return r.code;
}

// input_ids [B, L] of `dtype` after a one-byte tensor, so that they start at an odd offset.
void save_misaligned_ids(const std::string& path, const std::vector<int32_t>& ids, int64_t B, DType dtype) {
  Tensor pad = Tensor::zeros(DType::U8, {1});
  Tensor t = Tensor::zeros(dtype, {B, int64_t(ids.size()) / B});
  for (size_t i = 0; i < ids.size(); ++i) {
    if (dtype == DType::I64) t.ptr<int64_t>()[i] = ids[i];
    else if (dtype == DType::I32) t.ptr<int32_t>()[i] = ids[i];
    else t.ptr<uint8_t>()[i] = uint8_t(ids[i]);
  }
  save_safetensors(path, {{"pad", pad}, {"input_ids", t}});
}

TEST(CliLogits, FalconMambaFromMisalignedInt64AndInt32Ids) {
  test::TempDir tmp;
  const std::string dir = test::golden("hf_falconmamba");
  SafetensorsFile golden = SafetensorsFile::open(dir + "/golden.safetensors");
  const Tensor ids = golden.get("input_ids");
  const std::vector<double> want = test::to_f64(golden.get("logits"));
  for (DType dtype : {DType::I64, DType::I32}) {
    SCOPED_TRACE(dtype_name(dtype));
    const std::string in = tmp.file("ids.safetensors"), out = tmp.file("logits.safetensors");
    save_misaligned_ids(in, test::token_ids(ids), ids.shape[0], dtype);
    std::string err;
    ASSERT_EQ(m3_logits(dir, in, out, tmp, err), 0) << err;
    const Tensor got = SafetensorsFile::open(out).get("logits");
    EXPECT_EQ(got.shape, golden.get("logits").shape);
    EXPECT_LT(test::rel_err(test::to_f64(got), want), 1e-4);
  }
}

TEST(CliLogits, OtherIntegerDtypeIsRefused) {
  test::TempDir tmp;
  const std::string in = tmp.file("ids.safetensors");
  save_misaligned_ids(in, {1, 2, 3}, 1, DType::U8);
  std::string err;
  EXPECT_EQ(m3_logits(test::golden("hf_falconmamba"), in, tmp.file("o"), tmp, err), 1);
  EXPECT_NE(err.find(in + ": input_ids must be I64 or I32, found U8"), std::string::npos) << err;
}

}  // namespace
}  // namespace m3
