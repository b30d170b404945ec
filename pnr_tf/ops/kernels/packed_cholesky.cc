// Fused solves of many small symmetric positive-definite systems for the pNR regression (CPU),
// and the elementwise IRLS weights of the iterations that carry no gradient.
//
// The IRLS step needs one k x k solve per appearance column and example (b * d systems, k ~ 32).
// Stock kernels unpack the packed Gram table to (b, d, k, k), then run one Eigen factorisation
// per matrix; together they take longer than the Gram GEMM they serve. Here 16 neighbouring
// columns are factorised side by side, one per SIMD lane, straight from the packed (b, q, d)
// layout, in a buffer that stays in L1. pnr_tf/ops/packed_cholesky.py builds and loads this file;
// the stock kernels remain the fallback and the reference it is tested against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::errors::InvalidArgument;

constexpr int kLanes = 16;  // systems solved side by side, one per SIMD lane
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Solves (G + (ridge * mean(diag G) + floor) I) x = rhs for every column's G.
REGISTER_OP("PnrPackedCholeskySolve")
    .Input("packed: float")  // (b, q, d): upper triangle of each column's k x k matrix G, q = k(k+1)/2
    .Input("rhs: float")     // (b, d, k)
    .Attr("ridge: float = 0.0")
    .Attr("floor: float = 0.0")
    // false: the factor output is empty (IRLS iterations that carry no gradient need no factor,
    // and writing it costs as much memory traffic as reading the Gram table)
    .Attr("with_factor: bool = true")
    .Output("solution: float")  // (b, d, k)
    .Output("factor: float")    // (b, q, d): upper Cholesky factor U of the ridged matrix (= U^T U), same packing
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &unused));
      bool with_factor = true;
      TF_RETURN_IF_ERROR(c->GetAttr("with_factor", &with_factor));
      c->set_output(0, c->input(1));
      c->set_output(1, with_factor ? c->input(0) : c->MakeShape({0, 0, 0}));
      return absl::OkStatus();
    });

REGISTER_OP("PnrPackedCholeskySolveWithFactor")
    .Input("factor: float")  // (b, q, d) from PnrPackedCholeskySolve
    .Input("rhs: float")     // (b, d, k)
    .Output("solution: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &unused));
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    });

// The IRLS weights of the iterations that carry no gradient, in one pass over memory instead of
// six elementwise ops (sub, abs, max, reciprocal, two products), each reading and writing (b, n, d).
REGISTER_OP("PnrIrlsWeights")
    .Input("appearance: float")   // (b, n, d)
    .Input("prediction: float")   // (b, n, d): P W
    .Input("row_weights: float")  // (b, n, 1)
    .Attr("delta: float")
    .Output("weights: float")               // row_weight / max(|appearance - prediction|, delta)
    .Output("weighted_appearance: float")  // weights * appearance
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &unused));
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(0));
      return absl::OkStatus();
    });

// kLanes systems side by side: element l of every Lane belongs to system l, so each step is one
// vector operation (GCC vector extension; two AVX2 registers, one AVX-512 register).
typedef float Lane __attribute__((vector_size(kLanes * sizeof(float))));

// Solves U^T U x = rhs in place; values: size Lanes, rhs in, solution out.
inline void Substitute(const Lane* __restrict factor, Lane* __restrict values, int size) {
  int row_start = 0;
  for (int u = 0; u < size; ++u) {  // forward: U^T z = rhs
    const Lane* row = factor + row_start;
    const Lane value = values[u] / row[0];
    values[u] = value;
    for (int v = u + 1; v < size; ++v) values[v] -= row[v - u] * value;
    row_start += size - u;
  }
  for (int u = size - 1; u >= 0; --u) {  // backward: U x = z
    row_start -= size - u;
    const Lane* row = factor + row_start;
    Lane value = values[u];
    for (int v = u + 1; v < size; ++v) value -= row[v - u] * values[v];
    values[u] = value / row[0];
  }
}

// In place: packed upper triangles (q Lanes) -> their upper Cholesky factors, right-looking.
inline void Factorize(Lane* __restrict matrix, int size) {
  int row_start = 0;
  for (int u = 0; u < size; ++u) {
    Lane* row = matrix + row_start;
    Lane pivot;
    // A pivot that is not positive (or NaN) means the matrix is not positive definite: NaN, which
    // spreads to every later pivot and so to the whole solution of that system.
    for (int l = 0; l < kLanes; ++l) pivot[l] = row[0][l] > 0.0f ? std::sqrt(row[0][l]) : kNaN;
    const Lane inverse = 1.0f / pivot;
    row[0] = pivot;
    for (int v = 1; v < size - u; ++v) row[v] *= inverse;
    Lane* trailing = row + (size - u);  // rows u+1.. of the remaining matrix, packed
    for (int v = 1; v < size - u; ++v) {
      const Lane left = row[v];
      for (int w = v; w < size - u; ++w) trailing[w - v] -= left * row[w];
      trailing += size - u - v;
    }
    row_start += size - u;
  }
}

struct Geometry {
  int64_t batch, packed, columns, size;
};

tensorflow::Status ReadGeometry(const Tensor& packed, const Tensor& rhs, Geometry* geometry) {
  if (packed.dims() != 3 || rhs.dims() != 3)
    return InvalidArgument("packed must be (b, q, d) and rhs (b, d, k)");
  geometry->batch = packed.dim_size(0);
  geometry->packed = packed.dim_size(1);
  geometry->columns = packed.dim_size(2);
  geometry->size = rhs.dim_size(2);
  if (rhs.dim_size(0) != geometry->batch || rhs.dim_size(1) != geometry->columns ||
      geometry->packed != geometry->size * (geometry->size + 1) / 2)
    return InvalidArgument("shapes do not match: packed ", packed.shape().DebugString(), ", rhs ",
                           rhs.shape().DebugString());
  return absl::OkStatus();
}

// Every block of kLanes consecutive columns of one example: gather, (factorise,) substitute, scatter.
// Blocks are independent, so they are sharded over TensorFlow's intra-op thread pool.
template <bool kFactorize>
void SolveBlocks(OpKernelContext* context, const Geometry& g, const float* packed_in, const float* rhs,
                 float* solution, float* factor_out, float ridge = 0.0f, float floor = 0.0f) {
  const int64_t blocks_per_example = (g.columns + kLanes - 1) / kLanes;
  const int64_t cost = g.packed * kLanes * (kFactorize ? g.size : 4);
  std::vector<float> is_diagonal(g.packed, 0.0f);
  for (int64_t u = 0, position = 0; u < g.size; position += g.size - u, ++u) is_diagonal[position] = 1.0f;
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<Lane> matrix(g.packed), values(g.size);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t b = block / blocks_per_example;
      const int64_t first = (block % blocks_per_example) * kLanes;
      const int64_t used = std::min<int64_t>(kLanes, g.columns - first);
      const float* source = packed_in + b * g.packed * g.columns + first;
      for (int64_t p = 0; p < g.packed; ++p) {
        Lane& destination = matrix[p];
        for (int64_t l = 0; l < used; ++l) destination[l] = source[p * g.columns + l];
        // Lanes past the last column hold the identity, so their factorisation stays finite.
        for (int64_t l = used; l < kLanes; ++l) destination[l] = is_diagonal[p];
      }
      // One failure policy for every solver: a system holding a NaN or an infinity solves to NaN
      // (an infinite entry would otherwise give finite, meaningless numbers). The sum of a lane's
      // entries times zero is 0 when they are all finite and NaN otherwise: one vector add per entry.
      Lane total = {};
      for (int64_t p = 0; p < g.packed; ++p) total += matrix[p];
      if (kFactorize) {
        Lane trace = {};
        for (int64_t u = 0, position = 0; u < g.size; position += g.size - u, ++u) trace += matrix[position];
        const Lane strength = trace * (ridge / g.size) + floor;
        for (int64_t u = 0, position = 0; u < g.size; position += g.size - u, ++u) matrix[position] += strength;
        Factorize(matrix.data(), g.size);
      }
      const float* rhs_block = rhs + (b * g.columns + first) * g.size;
      for (int64_t u = 0; u < g.size; ++u)
        for (int64_t l = 0; l < kLanes; ++l) values[u][l] = l < used ? rhs_block[l * g.size + u] : 0.0f;
      for (int64_t u = 0; u < g.size; ++u) total += values[u];
      const Lane poison = total * 0.0f;  // not folded away: -O3 keeps IEEE semantics (no -ffast-math)
      Substitute(matrix.data(), values.data(), g.size);
      for (int64_t u = 0; u < g.size; ++u) values[u] += poison;
      float* solution_block = solution + (b * g.columns + first) * g.size;
      for (int64_t l = 0; l < used; ++l)
        for (int64_t u = 0; u < g.size; ++u) solution_block[l * g.size + u] = values[u][l];
      if (kFactorize && factor_out != nullptr) {
        float* destination = factor_out + b * g.packed * g.columns + first;
        for (int64_t p = 0; p < g.packed; ++p)
          for (int64_t l = 0; l < used; ++l) destination[p * g.columns + l] = matrix[p][l] + poison[l];
      }
    }
  };
  auto* workers = context->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(workers->num_threads, workers->workers, g.batch * blocks_per_example, cost, work);
}

class PackedCholeskySolveOp : public OpKernel {
 public:
  explicit PackedCholeskySolveOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("ridge", &ridge_));
    OP_REQUIRES_OK(context, context->GetAttr("floor", &floor_));
    OP_REQUIRES_OK(context, context->GetAttr("with_factor", &with_factor_));
  }
  void Compute(OpKernelContext* context) override {
    const Tensor& packed = context->input(0);
    const Tensor& rhs = context->input(1);
    Geometry g;
    OP_REQUIRES_OK(context, ReadGeometry(packed, rhs, &g));
    Tensor* solution = nullptr;
    Tensor* factor = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, rhs.shape(), &solution));
    OP_REQUIRES_OK(context, context->allocate_output(
                                1, with_factor_ ? packed.shape() : tensorflow::TensorShape({0, 0, 0}), &factor));
    SolveBlocks<true>(context, g, packed.flat<float>().data(), rhs.flat<float>().data(),
                      solution->flat<float>().data(), with_factor_ ? factor->flat<float>().data() : nullptr, ridge_,
                      floor_);
  }

 private:
  float ridge_;
  float floor_;
  bool with_factor_;
};

class PackedCholeskySolveWithFactorOp : public OpKernel {
 public:
  explicit PackedCholeskySolveWithFactorOp(OpKernelConstruction* context) : OpKernel(context) {}
  void Compute(OpKernelContext* context) override {
    const Tensor& factor = context->input(0);
    const Tensor& rhs = context->input(1);
    Geometry g;
    OP_REQUIRES_OK(context, ReadGeometry(factor, rhs, &g));
    Tensor* solution = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, rhs.shape(), &solution));
    SolveBlocks<false>(context, g, factor.flat<float>().data(), rhs.flat<float>().data(),
                       solution->flat<float>().data(), nullptr);
  }
};

class IrlsWeightsOp : public OpKernel {
 public:
  explicit IrlsWeightsOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("delta", &delta_));
  }
  void Compute(OpKernelContext* context) override {
    const Tensor& appearance = context->input(0);
    const Tensor& prediction = context->input(1);
    const Tensor& row_weights = context->input(2);
    OP_REQUIRES(context, appearance.dims() == 3 && appearance.shape() == prediction.shape(),
                InvalidArgument("appearance and prediction must be one (b, n, d) shape, got ",
                                appearance.shape().DebugString(), " and ", prediction.shape().DebugString()));
    const int64_t rows = appearance.dim_size(0) * appearance.dim_size(1);
    const int64_t columns = appearance.dim_size(2);
    OP_REQUIRES(context, row_weights.NumElements() == rows,
                InvalidArgument("row_weights must be (b, n, 1), got ", row_weights.shape().DebugString()));
    Tensor* weights = nullptr;
    Tensor* weighted = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, appearance.shape(), &weights));
    OP_REQUIRES_OK(context, context->allocate_output(1, appearance.shape(), &weighted));
    const float* a = appearance.flat<float>().data();
    const float* p = prediction.flat<float>().data();
    const float* r = row_weights.flat<float>().data();
    float* w = weights->flat<float>().data();
    float* wa = weighted->flat<float>().data();
    const float delta = delta_;
    auto work = [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const float row_weight = r[row];
        const int64_t offset = row * columns;
        for (int64_t j = 0; j < columns; ++j) {  // vectorised by the compiler
          // fmax would turn a NaN residual into delta; the comparison keeps NaN (the failure policy).
          const float residual = std::fabs(a[offset + j] - p[offset + j]);
          const float value = row_weight / (residual < delta ? delta : residual);
          w[offset + j] = value;
          wa[offset + j] = value * a[offset + j];
        }
      }
    };
    auto* workers = context->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(workers->num_threads, workers->workers, rows, columns * 6, work);
  }

 private:
  float delta_;
};

REGISTER_KERNEL_BUILDER(Name("PnrPackedCholeskySolve").Device(DEVICE_CPU), PackedCholeskySolveOp);
REGISTER_KERNEL_BUILDER(Name("PnrIrlsWeights").Device(DEVICE_CPU), IrlsWeightsOp);
REGISTER_KERNEL_BUILDER(Name("PnrPackedCholeskySolveWithFactor").Device(DEVICE_CPU), PackedCholeskySolveWithFactorOp);

}  // namespace
