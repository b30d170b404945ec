// Fused solves of many small symmetric positive-definite systems for the pNR regression (CPU),
// the elementwise IRLS weights, the rows' outer products, and the gradients of all three.
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

// The gradient of PnrPackedCholeskySolve in one pass: r = M^-1 upstream from the stored factor,
// and dM = -sym(r x^T) written straight into the packed layout (an off-diagonal entry stands for
// both (u, v) and (v, u)); the relative ridge adds (ridge / k) trace(dM) to the diagonal. Stock ops
// needed a solve, two transposes, four gathers and five elementwise passes over (b, q, d) for this.
REGISTER_OP("PnrPackedCholeskySolveGrad")
    .Input("factor: float")    // (b, q, d) from PnrPackedCholeskySolve
    .Input("solution: float")  // (b, d, k): its solution x
    .Input("upstream: float")  // (b, d, k): the gradient arriving at x
    .Attr("ridge: float = 0.0")
    .Output("packed_gradient: float")  // (b, q, d)
    .Output("rhs_gradient: float")     // (b, d, k)
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 3, &unused));
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(2));
      return absl::OkStatus();
    });

// Upper-triangle entries of every pose row's outer product p_i p_i^T, rows last: (b, n, k) ->
// (b, k(k+1)/2, n), and its gradient. The stock form is two gathers forward and two
// UnsortedSegmentSums backward; here each is one streaming pass with the rows' pose in L1.
REGISTER_OP("PnrRowOuterProducts")
    .Input("pose: float")  // (b, n, k)
    .Output("outer: float")  // (b, k(k+1)/2, n)
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle pose;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &pose));
      tensorflow::shape_inference::DimensionHandle size = c->Dim(pose, 2);
      tensorflow::shape_inference::DimensionHandle packed = c->UnknownDim();
      if (c->ValueKnown(size)) packed = c->MakeDim(c->Value(size) * (c->Value(size) + 1) / 2);
      c->set_output(0, c->MakeShape({c->Dim(pose, 0), packed, c->Dim(pose, 1)}));
      return absl::OkStatus();
    });

REGISTER_OP("PnrRowOuterProductsGrad")
    .Input("pose: float")      // (b, n, k)
    .Input("upstream: float")  // (b, k(k+1)/2, n)
    .Output("pose_gradient: float")  // (b, n, k): d p_u = sum_v G_uv p_v, G the symmetric matrix of the
                                     // packed upstream with its diagonal doubled
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
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

// The gradient of PnrIrlsWeights, for the IRLS iteration that carries one: with r = a - prediction,
// m = max(|r|, delta), w = row_weight / m and g = weights_gradient + weighted_gradient * a,
// d a = weighted_gradient * w - g (w / m) dm/dr, d prediction = g (w / m) dm/dr (dm/dr = sign r where
// |r| >= delta, else 0) and d row_weight = sum_j g_j / m_j. One pass instead of about ten
// elementwise ops over (b, n, d).
REGISTER_OP("PnrIrlsWeightsGrad")
    .Input("appearance: float")           // (b, n, d)
    .Input("prediction: float")           // (b, n, d)
    .Input("row_weights: float")          // (b, n, 1)
    .Input("weights_gradient: float")     // (b, n, d)
    .Input("weighted_gradient: float")    // (b, n, d)
    .Attr("delta: float")
    .Output("appearance_gradient: float")   // (b, n, d)
    .Output("prediction_gradient: float")   // (b, n, d)
    .Output("row_weights_gradient: float")  // (b, n, 1)
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(0));
      c->set_output(2, c->input(2));
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

// The gradient of every system, kLanes columns at a time: r = M^-1 upstream, then the packed dM.
void SolveGradientBlocks(OpKernelContext* context, const Geometry& g, const float* factor, const float* solution,
                         const float* upstream, float* packed_gradient, float* rhs_gradient, float ridge) {
  const int64_t blocks_per_example = (g.columns + kLanes - 1) / kLanes;
  const int64_t cost = g.packed * kLanes * 8;
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<Lane> matrix(g.packed), values(g.size), unknowns(g.size);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t b = block / blocks_per_example;
      const int64_t first = (block % blocks_per_example) * kLanes;
      const int64_t used = std::min<int64_t>(kLanes, g.columns - first);
      const int64_t packed_offset = b * g.packed * g.columns + first;
      const int64_t vector_offset = (b * g.columns + first) * g.size;
      Lane total = {};
      for (int64_t p = 0; p < g.packed; ++p) {
        for (int64_t l = 0; l < kLanes; ++l) matrix[p][l] = 1.0f;  // unused lanes: any finite factor
        for (int64_t l = 0; l < used; ++l) matrix[p][l] = factor[packed_offset + p * g.columns + l];
        total += matrix[p];
      }
      for (int64_t u = 0; u < g.size; ++u)
        for (int64_t l = 0; l < kLanes; ++l) {
          values[u][l] = l < used ? upstream[vector_offset + l * g.size + u] : 0.0f;
          unknowns[u][l] = l < used ? solution[vector_offset + l * g.size + u] : 0.0f;
        }
      for (int64_t u = 0; u < g.size; ++u) total += values[u];
      const Lane poison = total * 0.0f;  // the same NaN policy as the solve
      Substitute(matrix.data(), values.data(), g.size);
      for (int64_t u = 0; u < g.size; ++u) values[u] += poison;
      // dM = -(r x^T + x r^T) / 2, packed: off-diagonal entries count twice, the diagonal once.
      Lane trace = {};
      for (int64_t u = 0, p = 0; u < g.size; ++u) {
        const Lane diagonal = -values[u] * unknowns[u];
        matrix[p++] = diagonal;
        trace += diagonal;
        for (int64_t v = u + 1; v < g.size; ++v) matrix[p++] = -(values[u] * unknowns[v] + values[v] * unknowns[u]);
      }
      if (ridge != 0.0f) {
        const Lane shift = trace * (ridge / g.size);
        for (int64_t u = 0, position = 0; u < g.size; position += g.size - u, ++u) matrix[position] += shift;
      }
      for (int64_t p = 0; p < g.packed; ++p)
        for (int64_t l = 0; l < used; ++l) packed_gradient[packed_offset + p * g.columns + l] = matrix[p][l];
      for (int64_t l = 0; l < used; ++l)
        for (int64_t u = 0; u < g.size; ++u) rhs_gradient[vector_offset + l * g.size + u] = values[u][l];
    }
  };
  auto* workers = context->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(workers->num_threads, workers->workers, g.batch * blocks_per_example, cost, work);
}

class PackedCholeskySolveGradOp : public OpKernel {
 public:
  explicit PackedCholeskySolveGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("ridge", &ridge_));
  }
  void Compute(OpKernelContext* context) override {
    const Tensor& factor = context->input(0);
    const Tensor& solution = context->input(1);
    const Tensor& upstream = context->input(2);
    Geometry g;
    OP_REQUIRES_OK(context, ReadGeometry(factor, upstream, &g));
    OP_REQUIRES(context, solution.shape() == upstream.shape(),
                InvalidArgument("solution and upstream must be one (b, d, k) shape, got ",
                                solution.shape().DebugString(), " and ", upstream.shape().DebugString()));
    Tensor* packed_gradient = nullptr;
    Tensor* rhs_gradient = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, factor.shape(), &packed_gradient));
    OP_REQUIRES_OK(context, context->allocate_output(1, upstream.shape(), &rhs_gradient));
    SolveGradientBlocks(context, g, factor.flat<float>().data(), solution.flat<float>().data(),
                        upstream.flat<float>().data(), packed_gradient->flat<float>().data(),
                        rhs_gradient->flat<float>().data(), ridge_);
  }

 private:
  float ridge_;
};

// Row outer products work on chunks of kRowChunk rows of one example, transposed into a local
// (k, rows) buffer so every inner loop runs over contiguous rows (vectorised by the compiler).
constexpr int64_t kRowChunk = 128;

struct OuterGeometry {
  int64_t batch, rows, size, packed;
};

template <typename Function>
void ForEachRowChunk(OpKernelContext* context, const OuterGeometry& g, Function function) {
  const int64_t chunks_per_example = (g.rows + kRowChunk - 1) / kRowChunk;
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> by_column(g.size * kRowChunk), gradient_by_column(g.size * kRowChunk);
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t b = chunk / chunks_per_example;
      const int64_t first = (chunk % chunks_per_example) * kRowChunk;
      const int64_t count = std::min<int64_t>(kRowChunk, g.rows - first);
      function(b, first, count, by_column.data(), gradient_by_column.data());
    }
  };
  auto* workers = context->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(workers->num_threads, workers->workers, g.batch * chunks_per_example,
                    g.packed * kRowChunk * 3, work);
}

// pose rows [first, first + count) of example b -> by_column[u * kRowChunk + i].
inline void LoadColumns(const OuterGeometry& g, const float* pose, int64_t b, int64_t first, int64_t count,
                        float* by_column) {
  const float* rows = pose + (b * g.rows + first) * g.size;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t u = 0; u < g.size; ++u) by_column[u * kRowChunk + i] = rows[i * g.size + u];
}

tensorflow::Status ReadOuterGeometry(const Tensor& pose, OuterGeometry* g) {
  if (pose.dims() != 3) return InvalidArgument("pose must be (b, n, k), got ", pose.shape().DebugString());
  g->batch = pose.dim_size(0);
  g->rows = pose.dim_size(1);
  g->size = pose.dim_size(2);
  g->packed = g->size * (g->size + 1) / 2;
  return absl::OkStatus();
}

class RowOuterProductsOp : public OpKernel {
 public:
  explicit RowOuterProductsOp(OpKernelConstruction* context) : OpKernel(context) {}
  void Compute(OpKernelContext* context) override {
    const Tensor& pose = context->input(0);
    OuterGeometry g;
    OP_REQUIRES_OK(context, ReadOuterGeometry(pose, &g));
    Tensor* outer = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tensorflow::TensorShape({g.batch, g.packed, g.rows}), &outer));
    const float* pose_data = pose.flat<float>().data();
    float* outer_data = outer->flat<float>().data();
    ForEachRowChunk(context, g, [&](int64_t b, int64_t first, int64_t count, float* by_column, float*) {
      LoadColumns(g, pose_data, b, first, count, by_column);
      float* destination = outer_data + b * g.packed * g.rows + first;
      for (int64_t u = 0, p = 0; u < g.size; ++u)
        for (int64_t v = u; v < g.size; ++v, ++p) {
          const float* left = by_column + u * kRowChunk;
          const float* right = by_column + v * kRowChunk;
          float* row = destination + p * g.rows;
          for (int64_t i = 0; i < count; ++i) row[i] = left[i] * right[i];
        }
    });
  }
};

class RowOuterProductsGradOp : public OpKernel {
 public:
  explicit RowOuterProductsGradOp(OpKernelConstruction* context) : OpKernel(context) {}
  void Compute(OpKernelContext* context) override {
    const Tensor& pose = context->input(0);
    const Tensor& upstream = context->input(1);
    OuterGeometry g;
    OP_REQUIRES_OK(context, ReadOuterGeometry(pose, &g));
    OP_REQUIRES(context, upstream.shape() == tensorflow::TensorShape({g.batch, g.packed, g.rows}),
                InvalidArgument("upstream must be (b, k(k+1)/2, n) for pose ", pose.shape().DebugString(), ", got ",
                                upstream.shape().DebugString()));
    Tensor* gradient = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, pose.shape(), &gradient));
    const float* pose_data = pose.flat<float>().data();
    const float* upstream_data = upstream.flat<float>().data();
    float* gradient_data = gradient->flat<float>().data();
    ForEachRowChunk(context, g, [&](int64_t b, int64_t first, int64_t count, float* by_column, float* sums) {
      LoadColumns(g, pose_data, b, first, count, by_column);
      std::fill(sums, sums + g.size * kRowChunk, 0.0f);
      const float* source = upstream_data + b * g.packed * g.rows + first;
      for (int64_t u = 0, p = 0; u < g.size; ++u) {
        float* sum_u = sums + u * kRowChunk;
        const float* pose_u = by_column + u * kRowChunk;
        const float* diagonal = source + p * g.rows;
        for (int64_t i = 0; i < count; ++i) sum_u[i] += 2.0f * diagonal[i] * pose_u[i];
        ++p;
        for (int64_t v = u + 1; v < g.size; ++v, ++p) {
          const float* entry = source + p * g.rows;
          float* sum_v = sums + v * kRowChunk;
          const float* pose_v = by_column + v * kRowChunk;
          for (int64_t i = 0; i < count; ++i) {
            sum_u[i] += entry[i] * pose_v[i];
            sum_v[i] += entry[i] * pose_u[i];
          }
        }
      }
      float* rows = gradient_data + (b * g.rows + first) * g.size;
      for (int64_t i = 0; i < count; ++i)
        for (int64_t u = 0; u < g.size; ++u) rows[i * g.size + u] = sums[u * kRowChunk + i];
    });
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

// One row of PnrIrlsWeightsGrad; returns d row_weight. A plain function with restrict pointers:
// inside the kernel's lambda GCC 12 left this loop scalar.
inline float IrlsWeightsGradRow(int64_t columns, float row_weight, float delta, const float* __restrict a,
                                const float* __restrict p, const float* __restrict gw, const float* __restrict gwa,
                                float* __restrict da, float* __restrict dp, float* __restrict contribution) {
  for (int64_t j = 0; j < columns; ++j) {  // vectorised by the compiler
    const float residual = a[j] - p[j];
    const float magnitude = std::fabs(residual);
    const float inverse = 1.0f / (magnitude < delta ? delta : magnitude);  // NaN stays NaN
    const float weight = row_weight * inverse;
    const float total = gw[j] + gwa[j] * a[j];
    // d w / d r = -(w / m) sign(r) where the floor is not active (and NaN for a NaN residual)
    const float slope = magnitude < delta ? 0.0f : (residual < 0.0f ? weight : -weight) * inverse;
    da[j] = gwa[j] * weight + total * slope;
    dp[j] = -(total * slope);
    contribution[j] = total * inverse;
  }
  // The row sum goes through a buffer: a running float sum would stay in order, and so keep the
  // loop above scalar, without -ffast-math.
  float row_sum = 0.0f;
  for (int64_t j = 0; j < columns; ++j) row_sum += contribution[j];
  return row_sum;
}

class IrlsWeightsGradOp : public OpKernel {
 public:
  explicit IrlsWeightsGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("delta", &delta_));
  }
  void Compute(OpKernelContext* context) override {
    const Tensor& appearance = context->input(0);
    const Tensor& prediction = context->input(1);
    const Tensor& row_weights = context->input(2);
    const Tensor& weights_gradient = context->input(3);
    const Tensor& weighted_gradient = context->input(4);
    OP_REQUIRES(context,
                appearance.dims() == 3 && appearance.shape() == prediction.shape() &&
                    appearance.shape() == weights_gradient.shape() && appearance.shape() == weighted_gradient.shape(),
                InvalidArgument("appearance, prediction and both gradients must be one (b, n, d) shape"));
    const int64_t rows = appearance.dim_size(0) * appearance.dim_size(1);
    const int64_t columns = appearance.dim_size(2);
    OP_REQUIRES(context, row_weights.NumElements() == rows,
                InvalidArgument("row_weights must be (b, n, 1), got ", row_weights.shape().DebugString()));
    Tensor* appearance_gradient = nullptr;
    Tensor* prediction_gradient = nullptr;
    Tensor* row_weights_gradient = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, appearance.shape(), &appearance_gradient));
    OP_REQUIRES_OK(context, context->allocate_output(1, appearance.shape(), &prediction_gradient));
    OP_REQUIRES_OK(context, context->allocate_output(2, row_weights.shape(), &row_weights_gradient));
    const float* appearance_data = appearance.flat<float>().data();
    const float* prediction_data = prediction.flat<float>().data();
    const float* r = row_weights.flat<float>().data();
    const float* weights_gradient_data = weights_gradient.flat<float>().data();
    const float* weighted_gradient_data = weighted_gradient.flat<float>().data();
    float* appearance_gradient_data = appearance_gradient->flat<float>().data();
    float* prediction_gradient_data = prediction_gradient->flat<float>().data();
    float* dr = row_weights_gradient->flat<float>().data();
    const float delta = delta_;
    auto work = [&](int64_t begin, int64_t end) {
      std::vector<float> contribution(columns);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t offset = row * columns;
        dr[row] = IrlsWeightsGradRow(columns, r[row], delta, appearance_data + offset, prediction_data + offset,
                                     weights_gradient_data + offset, weighted_gradient_data + offset,
                                     appearance_gradient_data + offset, prediction_gradient_data + offset,
                                     contribution.data());
      }
    };
    auto* workers = context->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(workers->num_threads, workers->workers, rows, columns * 12, work);
  }

 private:
  float delta_;
};

REGISTER_KERNEL_BUILDER(Name("PnrPackedCholeskySolve").Device(DEVICE_CPU), PackedCholeskySolveOp);
REGISTER_KERNEL_BUILDER(Name("PnrIrlsWeights").Device(DEVICE_CPU), IrlsWeightsOp);
REGISTER_KERNEL_BUILDER(Name("PnrIrlsWeightsGrad").Device(DEVICE_CPU), IrlsWeightsGradOp);
REGISTER_KERNEL_BUILDER(Name("PnrPackedCholeskySolveGrad").Device(DEVICE_CPU), PackedCholeskySolveGradOp);
REGISTER_KERNEL_BUILDER(Name("PnrRowOuterProducts").Device(DEVICE_CPU), RowOuterProductsOp);
REGISTER_KERNEL_BUILDER(Name("PnrRowOuterProductsGrad").Device(DEVICE_CPU), RowOuterProductsGradOp);

}  // namespace
