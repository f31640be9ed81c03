// Scalar-quantized (int8) vectors and their distance kernels, one per instruction set as for f32
// (distances.h), chosen by the same Kernel.
//
// Quantization is per vector and symmetric: scale = max|v| / 127, code = round(v / scale) in [-127, 127].
// It needs nothing learned from other rows, so a row pushed long after the build is coded exactly as well
// as the first one, and the codes of a row never change when others arrive. On unit vectors (cosine) the
// error of a dot product is about |scale|^2 * sqrt(d) / 12: far below the gaps between neighbours, and the
// best candidates are rescored in f32 anyway.
//
// One coded vector, Int8Bytes(dims) bytes: the codes, zero-padded to a multiple of 4; the float scale; the
// float squared norm of the decoded vector (so L2 is |a|^2 + |b|^2 - 2 a.b with one integer dot product).
#pragma once

#include <cstddef>
#include <cstdint>

#include "distances.h"

namespace nearline {

size_t Int8Bytes(size_t dims);
void QuantizeInt8(const float* v, size_t dims, void* out);

// hnswlib DISTFUNCs over two coded vectors; the parameter points to the dims (a size_t), as for f32.
// Squared L2 and 1 - inner product of the decoded vectors.
DistFn L2Int8Distance(Kernel k);
DistFn IpInt8Distance(Kernel k);

}  // namespace nearline
