"""PostgreSQL's extended hash functions, computed on the client (numba), bit for bit.

The ``pg_hash`` diff (:mod:`qfs_assets.activities.dual_write.diff`) lets PostgreSQL hash every
row of the system of record and hashes the manifest's rows here, so both sides must compute the
very same 64-bit values. PostgreSQL's hash opclass support functions of the types in
``qfs_objects`` all reduce to Bob Jenkins' lookup3 as PostgreSQL adapted it (``src/common/hashfn.c``,
``hash_bytes_extended`` and ``hash_bytes_uint32_extended``; the wrappers in
``src/backend/access/hash/hashfunc.c``), re-implemented here from that description:

* ``hashtextextended(text, seed)`` (deterministic collation, e.g. ``COLLATE "C"``): the text's
  bytes (UTF-8 in a UTF8 database) through ``hash_bytes_extended``;
* ``hashint8extended(int8, seed)``: the low 32 bits xor the high 32 bits (xor their complement
  when negative) through ``hash_bytes_uint32_extended``; ``hashint4extended`` and
  ``hashint2extended`` hash the sign-extended value the same way (so all three agree on equal
  values, as PostgreSQL's cross-type hashing requires);
* a non-zero seed is mixed into the state first (its high word into ``a``, its low word into
  ``b``); the 64-bit result is ``b << 32 | c``, returned by PostgreSQL as a signed ``bigint``.

Little-endian machines only (PostgreSQL's word-at-a-time path reads little-endian words, which
is what the byte-wise code below computes); ``qfs_assets_tests/test_pghash.py`` checks every
function against a real server on random and edge values.

The row hash of the diff (:func:`row_hash`, and the SQL in ``diff.py`` that must mirror it):

* ``base = hashtextextended(object_id, 0)``;
* in flight (``updated_at >= end``): ``hashint8extended(1, base)`` (whatever its other fields:
  an object in flight is only counted);
* else a tombstone: ``hashint8extended(2, base)`` (a row deleted on both sides is consistent
  whatever its other fields);
* else ``hashint8extended(size_bytes, hashint8extended(version, hashint2extended(total_shards,
  hashint2extended(data_shards, hashtextextended(content_hash, base)))))`` (the SQL hashes the
  smallint shard counts with ``hashint2extended``, equal to ``hashint8extended`` of the same value
  and one cast cheaper a row on the server): every field the
  classification compares, chained through the seed (so values cannot trade places unnoticed).
  ``updated_at`` is left out on purpose: it decides only whether a row is in flight.
"""

from __future__ import annotations

import mmap
import sys

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("pghash: PostgreSQL's hash of a word differs on big-endian machines")

_M32 = np.uint64(0xFFFFFFFF)
_INIT = np.uint64(0x9E3779B9 + 3923095)


@nb.njit(cache=True, nogil=True, inline="always")
def _rot(x, k):
    return ((x << np.uint64(k)) | (x >> np.uint64(32 - k))) & _M32


@nb.njit(cache=True, nogil=True, inline="always")
def _mix(a, b, c):
    a = (a - c) & _M32
    a ^= _rot(c, 4)
    c = (c + b) & _M32
    b = (b - a) & _M32
    b ^= _rot(a, 6)
    a = (a + c) & _M32
    c = (c - b) & _M32
    c ^= _rot(b, 8)
    b = (b + a) & _M32
    a = (a - c) & _M32
    a ^= _rot(c, 16)
    c = (c + b) & _M32
    b = (b - a) & _M32
    b ^= _rot(a, 19)
    a = (a + c) & _M32
    c = (c - b) & _M32
    c ^= _rot(b, 4)
    b = (b + a) & _M32
    return a, b, c


@nb.njit(cache=True, nogil=True, inline="always")
def _final(a, b, c):
    c ^= b
    c = (c - _rot(b, 14)) & _M32
    a ^= c
    a = (a - _rot(c, 11)) & _M32
    b ^= a
    b = (b - _rot(a, 25)) & _M32
    c ^= b
    c = (c - _rot(b, 16)) & _M32
    a ^= c
    a = (a - _rot(c, 4)) & _M32
    b ^= a
    b = (b - _rot(a, 14)) & _M32
    c ^= b
    c = (c - _rot(b, 24)) & _M32
    return a, b, c


@nb.njit(cache=True, nogil=True, inline="always")
def _seeded(length, seed):
    a = (_INIT + np.uint64(length)) & _M32
    b = a
    c = a
    if seed != np.uint64(0):
        a = (a + (seed >> np.uint64(32))) & _M32
        b = (b + (seed & _M32)) & _M32
        a, b, c = _mix(a, b, c)
    return a, b, c


@nb.njit(cache=True, nogil=True, inline="always")
def _word(data, i, n):
    """Little-endian word of up to 4 bytes at ``data[i:i+n]``."""
    w = np.uint64(0)
    for j in range(n):
        w |= np.uint64(data[i + j]) << np.uint64(8 * j)
    return w


@intrinsic
def _load32(typingctx, data, i):
    """The little-endian 32-bit word at ``data[i:i+4]`` (uint8 array, any alignment), as uint64:
    one unaligned load where ``_word`` assembles four bytes (measured: the manifest's row hashes ~1.4x faster)."""
    sig = types.uint64(data, i)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        word = builder.load(builder.bitcast(ptr, ir.IntType(32).as_pointer()), align=1)
        return builder.zext(word, ir.IntType(64))

    return sig, codegen


@nb.njit(cache=True, nogil=True)
def hash_bytes_extended(data, start, length, seed):
    """``hash_bytes_extended(data[start:start+length], seed)`` as an unsigned 64-bit value."""
    a, b, c = _seeded(length, seed)
    i = start
    left = length
    while left >= 12:
        a = (a + _load32(data, i)) & _M32
        b = (b + _load32(data, i + 4)) & _M32
        c = (c + _load32(data, i + 8)) & _M32
        a, b, c = _mix(a, b, c)
        i += 12
        left -= 12
    if left >= 9:  # the lowest byte of c is reserved for the length
        c = (c + (_word(data, i + 8, left - 8) << np.uint64(8))) & _M32
    if left >= 8:
        b = (b + _load32(data, i + 4)) & _M32
    elif left >= 5:
        b = (b + _word(data, i + 4, left - 4)) & _M32
    if left >= 4:
        a = (a + _load32(data, i)) & _M32
    elif left >= 1:
        a = (a + _word(data, i, left)) & _M32
    a, b, c = _final(a, b, c)
    return (b << np.uint64(32)) | c


@nb.njit(cache=True, nogil=True)
def hash_uint32_extended(k, seed):
    """``hash_bytes_uint32_extended(k, seed)`` as an unsigned 64-bit value."""
    a, b, c = _seeded(4, seed)
    a = (a + (np.uint64(k) & _M32)) & _M32
    a, b, c = _final(a, b, c)
    return (b << np.uint64(32)) | c


@nb.njit(cache=True, nogil=True)
def hash_int8_extended(v, seed):
    """``hashint8extended(v, seed)`` (also ``hashint4extended``/``hashint2extended`` of the same value)."""
    u = np.uint64(v)
    lo = u & _M32
    hi = u >> np.uint64(32)
    if v >= 0:
        lo ^= hi
    else:
        lo ^= (~hi) & _M32
    return hash_uint32_extended(lo, seed)


IN_FLIGHT_TAG = 1
TOMBSTONE_TAG = 2


@nb.njit(cache=True, nogil=True)
def row_hash(base, fly, deleted, content, c_start, c_len, data_shards, total_shards, version, size_bytes):
    """The row hash of the diff (see the module docstring), unsigned; ``base`` is the key's hash."""
    if fly:
        return hash_int8_extended(IN_FLIGHT_TAG, base)
    if deleted:
        return hash_int8_extended(TOMBSTONE_TAG, base)
    h = hash_bytes_extended(content, c_start, c_len, base)
    h = hash_int8_extended(np.int64(data_shards), h)
    h = hash_int8_extended(np.int64(total_shards), h)
    h = hash_int8_extended(np.int64(version), h)
    return hash_int8_extended(np.int64(size_bytes), h)


def as_signed(u: int) -> int:
    """An unsigned 64-bit hash as PostgreSQL's signed ``bigint``."""
    return u - (1 << 64) if u >= 1 << 63 else u


# -- matching rows on their hashes (the ``pg_hash`` diff) ---------------------------------------
#
# The SoR's row hashes go into an open-addressing table of bare int64 values (linear probing,
# repeats kept): EMPTY marks a free slot, TAKEN an entry a manifest row has taken. Row hashes
# equal to either are folded onto their neighbour (``fold``) on both sides, so two rows whose
# hashes are 0 and 1 would be taken for the same (a 2**-63 chance a pair, beside 2**-64 for
# any two different rows).

EMPTY = 0
TAKEN = -(2**63)


_HUGE = 2 << 20  # the size of a huge page (x86-64 and arm64 with 4 KiB pages)


def zeroed_table(slots: int) -> np.ndarray:
    """An empty table (``slots`` zeros, int64), backed by huge pages where the kernel allows.

    The probes into a table of 10M rows are random accesses over ~128 MB: with 4 KiB pages
    nearly every one misses the TLB, and the first touch of each page is a page fault. With
    ``transparent_hugepage`` in ``madvise`` mode (a common default) only memory advised with
    ``MADV_HUGEPAGE`` gets 2 MiB pages; measured at 10M rows, inserting the SoR's hashes took
    0.5 s of CPU in plain ``np.zeros`` memory and 0.2 s in advised memory."""
    nbytes = slots * 8
    if nbytes < 4 * _HUGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.zeros(slots, np.int64)
    try:
        m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError, AttributeError):
        return np.zeros(slots, np.int64)
    return np.frombuffer(m, np.int64)  # anonymous memory is zero; the array keeps the map alive


@nb.njit(cache=True, nogil=True, inline="always")
def fold(h):
    if h == 0 or h == TAKEN:
        return h ^ 1
    return h


@intrinsic
def _prefetch(typingctx, arr, idx):
    """A hint to load ``arr[idx]``'s cache line (LLVM ``prefetch``): the table's probes are random
    memory accesses, so the next ones are requested while this one is compared."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


_AHEAD = 16  # probes requested ahead


@nb.njit(cache=True, nogil=True)
def insert(table, h):
    """Add the row hashes ``h`` to ``table`` (its length a power of two, never full)."""
    mask = len(table) - 1
    n = len(h)
    for i in range(n):
        if i + _AHEAD < n:
            _prefetch(table, np.int64(np.uint64(fold(h[i + _AHEAD])) & np.uint64(mask)))
        v = fold(h[i])
        s = np.int64(np.uint64(v) & np.uint64(mask))
        while table[s] != EMPTY:
            s = (s + 1) & mask
        table[s] = v


@nb.njit(cache=True, nogil=True)
def row_hashes(key_off, key_data, content_off, content_data, version, size_bytes, data_shards, total_shards,
               updated_us, deleted, end_us, hs, bases):
    """Every row's hash (folded, as int64 bit patterns) into ``hs``, its key's hash into ``bases``."""
    for r in range(len(version)):
        ks = key_off[r]
        base = hash_bytes_extended(key_data, ks, key_off[r + 1] - ks, np.uint64(0))
        bases[r] = np.int64(base)
        cs = content_off[r]
        hs[r] = fold(np.int64(row_hash(base, updated_us[r] >= end_us, deleted[r] != 0, content_data, cs,
                                       content_off[r + 1] - cs, data_shards[r], total_shards[r], version[r], size_bytes[r])))


@nb.njit(cache=True, nogil=True)
def match_rows(key_off, key_data, content_off, content_data, version, size_bytes, data_shards, total_shards,
               updated_us, deleted, end_us, table, unmatched, bases, counts):
    """Match manifest rows against the table of SoR row hashes.

    A row whose hash is in the table, not yet taken, takes that entry: the pair holds the same
    row on both sides. ``unmatched[r]`` is set for every other row; ``bases[r]`` gets every
    row's key hash; ``counts`` adds ``[matched, matched in flight, matched live]``."""
    mask = len(table) - 1
    n = len(version)
    hs = np.empty(n, np.int64)  # the hashes first (sequential), then the probes (random, prefetched)
    row_hashes(key_off, key_data, content_off, content_data, version, size_bytes, data_shards, total_shards,
               updated_us, deleted, end_us, hs, bases)
    for r in range(n):
        if r + _AHEAD < n:
            _prefetch(table, np.int64(np.uint64(hs[r + _AHEAD]) & np.uint64(mask)))
        h = hs[r]
        s = np.int64(np.uint64(h) & np.uint64(mask))
        found = False
        while table[s] != EMPTY:
            if table[s] == h:
                table[s] = TAKEN
                found = True
                break
            s = (s + 1) & mask
        if found:
            unmatched[r] = 0
            counts[0] += 1
            if updated_us[r] >= end_us:
                counts[1] += 1
            elif deleted[r] == 0:
                counts[2] += 1
        else:
            unmatched[r] = 1


@nb.njit(cache=True, nogil=True)
def untaken(table):
    """The (folded) row hashes no manifest row took."""
    k = 0
    for s in range(len(table)):
        if table[s] != EMPTY and table[s] != TAKEN:
            k += 1
    out = np.empty(k, np.int64)
    k = 0
    for s in range(len(table)):
        if table[s] != EMPTY and table[s] != TAKEN:
            out[k] = table[s]
            k += 1
    return out


@nb.njit(cache=True, nogil=True)
def rows_with(h, wanted, out_mask):
    """``out_mask[i] = 1`` where ``fold(h[i])`` is one of ``wanted``; returns how many."""
    slots = 2
    while slots < 2 * len(wanted):
        slots *= 2
    keys = np.zeros(slots, np.int64)
    mask = slots - 1
    for v in wanted:
        s = np.int64(np.uint64(v) & np.uint64(mask))
        while keys[s] != EMPTY and keys[s] != v:
            s = (s + 1) & mask
        keys[s] = v
    n = 0
    for i in range(len(h)):
        v = fold(h[i])
        s = np.int64(np.uint64(v) & np.uint64(mask))
        hit = 0
        while keys[s] != EMPTY:
            if keys[s] == v:
                hit = 1
                break
            s = (s + 1) & mask
        out_mask[i] = hit
        n += hit
    return n


@nb.njit(cache=True, nogil=True)
def shares_a_key(bases, unmatched):
    """Whether a matched row has the key hash of an unmatched row (a key the manifest holds twice)."""
    n_un = 0
    for r in range(len(bases)):
        if unmatched[r]:
            n_un += 1
    if n_un == 0:
        return False
    slots = 1
    while slots < 2 * n_un:
        slots *= 2
    keys = np.zeros(slots, np.int64)
    used = np.zeros(slots, np.uint8)
    mask = slots - 1
    for r in range(len(bases)):
        if unmatched[r]:
            s = np.int64(np.uint64(bases[r]) & np.uint64(mask))
            while used[s] and keys[s] != bases[r]:
                s = (s + 1) & mask
            used[s] = 1
            keys[s] = bases[r]
    for r in range(len(bases)):
        if not unmatched[r]:
            s = np.int64(np.uint64(bases[r]) & np.uint64(mask))
            while used[s]:
                if keys[s] == bases[r]:
                    return True
                s = (s + 1) & mask
    return False


def warm_up() -> None:
    """Load (or compile) every kernel the diff calls, e.g. in a thread while the server works."""
    z8, zi, z64 = np.zeros(1, np.uint8), np.zeros(2, np.int32), np.zeros(1, np.int64)
    table = np.zeros(4, np.int64)
    insert(table, z64)
    match_rows(zi, z8, zi, z8, z64, z64, np.zeros(1, np.int16), np.zeros(1, np.int16), z64, z8, 0, table,
               np.zeros(1, np.uint8), np.zeros(1, np.int64), np.zeros(3, np.int64))
    rows_with(z64, untaken(table), np.zeros(1, np.uint8))
    shares_a_key(z64, np.zeros(1, np.uint8))
