// A metadata filter compiled once per request (by the collection, in JS) into a small postfix program over
// the collection's columns, evaluated here for each label hnswlib considers, plus the labels a query
// excludes. The columns are the collection's own typed arrays, read in place.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "hnswlib.h"

namespace nearline {

// Column tags, as the collection writes them.
enum Tag : uint8_t { kAbsent = 0, kNull = 1, kString = 2, kNumber = 3, kBoolean = 4 };

// Instructions are four int32: op, a, b, c.
enum Op : int32_t {
  kConst = 0,   // a: 0 or 1
  kIsNull = 1,  // a: column
  kEq = 2,      // a: column, b: tag, c: constant index
  kCmp = 3,     // a: column, b: 0 gt 1 gte 2 lt 3 lte (numbers only), c: constant index
  kInSet = 4,   // a: column, b: tag, c: set index (sorted values)
  kBitmap = 5,  // a: bitmap index
  kAnd = 6,
  kOr = 7,
  kNot = 8,
};

struct Column {
  const uint8_t* tags;
  const double* values;
  size_t size;
};

struct Bitmap {
  const uint32_t* words;
  size_t size;
  bool Has(uint32_t label) const { return (label >> 5) < size && ((words[label >> 5] >> (label & 31)) & 1u) != 0; }
};

struct Set {
  const double* values;
  size_t size;
};

struct Program {
  std::vector<int32_t> code;
  std::vector<double> consts;
  std::vector<Column> columns;
  std::vector<Set> sets;
  std::vector<Bitmap> bitmaps;
  static constexpr int kMaxStack = 64;

  // Refuses a program that indexes out of range or unbalances the stack, so Eval needs no checks.
  void Check() const {
    if (code.size() % 4 != 0) throw std::runtime_error("filter program: length is not a multiple of 4");
    int sp = 0;
    for (size_t i = 0; i < code.size(); i += 4) {
      int32_t op = code[i], a = code[i + 1], b = code[i + 2], c = code[i + 3];
      auto column = [&] {
        if (a < 0 || static_cast<size_t>(a) >= columns.size()) throw std::runtime_error("filter program: bad column");
      };
      switch (op) {
        case kConst: sp++; break;
        case kIsNull: column(); sp++; break;
        case kEq:
          column();
          if (c < 0 || static_cast<size_t>(c) >= consts.size()) throw std::runtime_error("filter program: bad constant");
          sp++;
          break;
        case kCmp:
          column();
          if (b < 0 || b > 3 || c < 0 || static_cast<size_t>(c) >= consts.size()) throw std::runtime_error("filter program: bad comparison");
          sp++;
          break;
        case kInSet:
          column();
          if (c < 0 || static_cast<size_t>(c) >= sets.size()) throw std::runtime_error("filter program: bad set");
          sp++;
          break;
        case kBitmap:
          if (a < 0 || static_cast<size_t>(a) >= bitmaps.size()) throw std::runtime_error("filter program: bad bitmap");
          sp++;
          break;
        case kAnd:
        case kOr:
          if (sp < 2) throw std::runtime_error("filter program: stack underflow");
          sp--;
          break;
        case kNot:
          if (sp < 1) throw std::runtime_error("filter program: stack underflow");
          break;
        default: throw std::runtime_error("filter program: unknown op");
      }
      if (sp > kMaxStack) throw std::runtime_error("filter program: nested too deeply");
    }
    if (!code.empty() && sp != 1) throw std::runtime_error("filter program: does not leave one result");
  }

  bool Eval(uint32_t label) const {
    bool stack[kMaxStack];
    int sp = 0;
    const int32_t* pc = code.data();
    const int32_t* end = pc + code.size();
    for (; pc < end; pc += 4) {
      switch (pc[0]) {
        case kConst: stack[sp++] = pc[1] != 0; break;
        case kIsNull: {
          const Column& col = columns[pc[1]];
          stack[sp++] = label >= col.size || col.tags[label] <= kNull;
          break;
        }
        case kEq: {
          const Column& col = columns[pc[1]];
          stack[sp++] = label < col.size && col.tags[label] == pc[2] && col.values[label] == consts[pc[3]];
          break;
        }
        case kCmp: {
          const Column& col = columns[pc[1]];
          bool r = false;
          if (label < col.size && col.tags[label] == kNumber) {
            double v = col.values[label], k = consts[pc[3]];
            switch (pc[2]) {
              case 0: r = v > k; break;
              case 1: r = v >= k; break;
              case 2: r = v < k; break;
              default: r = v <= k; break;
            }
          }
          stack[sp++] = r;
          break;
        }
        case kInSet: {
          const Column& col = columns[pc[1]];
          const Set& s = sets[pc[3]];
          stack[sp++] = label < col.size && col.tags[label] == pc[2] && std::binary_search(s.values, s.values + s.size, col.values[label]);
          break;
        }
        case kBitmap: stack[sp++] = bitmaps[pc[1]].Has(label); break;
        case kAnd: sp--; stack[sp - 1] = stack[sp - 1] && stack[sp]; break;
        case kOr: sp--; stack[sp - 1] = stack[sp - 1] || stack[sp]; break;
        default: stack[sp - 1] = !stack[sp - 1]; break;
      }
    }
    return sp == 0 || stack[0];
  }
};

// What hnswlib asks during a filtered walk: is this label a possible hit?
class Predicate : public hnswlib::BaseFilterFunctor {
 public:
  Program program;
  std::vector<uint32_t> exclude;  // sorted

  bool Empty() const { return program.code.empty() && exclude.empty(); }
  bool Allowed(uint32_t label) const {
    if (!exclude.empty() && std::binary_search(exclude.begin(), exclude.end(), label)) return false;
    return program.Eval(label);
  }
  bool operator()(hnswlib::labeltype label) override { return Allowed(static_cast<uint32_t>(label)); }
};

}  // namespace nearline
