// The kernel layout of a tile record: the same bytes as the reference record (record.h), with
// the K and V code fields permuted so that integer dot-product instructions read them directly.
// The cache converts each record to this layout when the tile commits; the reference record
// stays the interchange format (FromKernelLayout restores it bit for bit). docs/format.md has
// the byte-level description.
//
// Why: the reference packs K codes along tokens inside each channel row ([D][G]) and V codes
// along channels inside each token row ([G][D]). Integer scoring wants, in every 32-bit lane,
// codes of 4 consecutive channels of one token (u8 x s8 -> i32 sums of 4 products: AVX-512
// VNNI vpdpbusd, AVX2 vpmaddubsw + vpmaddwd), with lanes running over tokens; value
// accumulation wants 4 consecutive tokens of one channel per lane, lanes running over channels.
//
// Both fields are cut into 64-byte blocks of 16 lanes x 4 bytes; with b bits per code and
// per = 8/b codes per byte, a lane holds 4 * per codes:
//   K block (token group tg of 16 tokens, channel group cg of C = 4*per channels), at byte
//     64 * (tg * D/C + cg): lane j = token 16*tg + j; channel 4*k + i of the group (k < per,
//     i < 4) sits in byte i of the lane at bit offset b*k.
//   V block (token group tg of T = 4*per tokens, channel group cg of 16 channels), at byte
//     64 * (tg * D/16 + cg): lane j = channel 16*cg + j; token 4*k + i of the group sits in
//     byte i of the lane at bit offset b*k.
// So unpacking "(lane >> b*k) & mask" gives the codes of 4 consecutive channels (K) or tokens
// (V) whose partner operand (query or probability bytes) is 4 consecutive bytes in natural order.
// Blocks are token-group major: one token group's blocks are contiguous.
#pragma once

#include <cstdint>

#include "quant/record.h"

namespace kvarn {

// Whether a record geometry has a kernel layout: G a multiple of 16 (tokens per K block, and
// a multiple of T for every b), D a multiple of 16 (channels per V block, and of C), bits
// 2, 4 or 8. Other geometries are stored and read in the reference layout.
bool KernelLayoutSupported(const TileRecordLayout& layout);

// rec [layout.bytes()] reference -> out [layout.bytes()] kernel layout (scale fields copied).
// rec and out must not overlap.
void ToKernelLayout(const TileRecordLayout& layout, const uint8_t* rec, uint8_t* out);
// The inverse.
void FromKernelLayout(const TileRecordLayout& layout, const uint8_t* kernel, uint8_t* out);

// Every code of a record, one byte each: K as kc [D][G] (channel-major, as the reference
// stores it) and V as vc [G][D]; `kernel` says which layout rec is in.
void UnpackRecordCodes(const TileRecordLayout& layout, const uint8_t* rec, bool kernel, uint8_t* kc,
                       uint8_t* vc);

// Code of channel d, token t, read from a kernel-layout record (readable accessors, for tests
// and the scalar paths).
unsigned KernelKCode(const TileRecordLayout& layout, const uint8_t* kernel, int d, int t);
unsigned KernelVCode(const TileRecordLayout& layout, const uint8_t* kernel, int t, int d);

}  // namespace kvarn
