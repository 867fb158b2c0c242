"""Compiled kernels of the columnar replay engine (numba, ``cache=True``); see ``columnar.py``.

Everything per event runs here, compiled once per machine by numba (LLVM) and cached beside this
file (``__pycache__``, or ``NUMBA_CACHE_DIR``):

* ``sha256_into``: OpenSSL's SHA-256 (``SHA256_Init/Update/Final`` of the ``libcrypto`` that
  Python's ``hashlib`` itself uses: SHA-NI code, ~0.27 us for a 200-byte event), called from
  compiled code by symbol name (so the kernels can be cached); without a loadable ``libcrypto``
  a portable SHA-256 written here (slower, same digests; ``test_replay_columnar`` checks both).
* ``chain_digests``: the hash-chain digest of every event (``prev_hash|seq|event_type|payload``),
  in the engine's chain thread; ``chain_checks``: the integrity and linkage
  checks of those digests against the stored hex hashes, 8 bytes at a time.
* ``parse_payloads``: one pass over the payload bytes that accepts a payload only when it is
  exactly the canonical JSON of its event type's fields (keys in sorted order, no whitespace,
  strings of printable ASCII without ``"`` or ``\\``, JSON integers in their column's range);
  every other payload is left to the reference parser (``payloads.parse_payload``), so the answer
  never depends on which parser ran.
* ``apply_events``: the effect table and the validity rules, event by event in log order, over
  the state held in flat arrays (open-addressing hash tables from key bytes to dense row ids,
  row columns indexed by id, string values in append-only byte heaps).
* ``flush``: the set-hash roots: a row changed since the last flush is marked dirty; the hash
  of an object or shard row as it was at the last flush is subtracted when it first changes,
  nodes and ledger rows keep their last hash (they change all the time); at a checkpoint every
  dirty row's canonical JSON text is written and hashed and added. Sums are 256-bit, in eight
  32-bit limbs (mod 2**256, as the contract's roots).

Ledger sums are 128-bit (two words), so a sum beyond int64 still hashes exactly as Python's
integers do (the reference engine's behaviour).
"""

from __future__ import annotations

import ctypes.util
import os

import numba as nb
import numpy as np
from numba import types

# ---------------------------------------------------------------------------------------------
# SHA-256


def _load_libcrypto() -> bool:
    if os.environ.get("QFS_REPLAY_PORTABLE_SHA") == "1":
        return False
    try:
        import _hashlib  # noqa: F401 - loads the libcrypto hashlib links, if it is a shared library
        import llvmlite.binding as llb
    except ImportError:  # pragma: no cover
        return False
    names = []
    try:
        import _hashlib as hl

        # the very library hashlib uses, found through the process's own link map
        with open("/proc/self/maps") as f:
            for line in f:
                if "libcrypto" in line:
                    names.append(line.split()[-1])
        _ = hl
    except OSError:  # pragma: no cover - not Linux
        pass
    found = ctypes.util.find_library("crypto")
    if found:
        names.append(found)
    for name in names + ["libcrypto.so.3", "libcrypto.so.1.1"]:
        try:
            llb.load_library_permanently(name)
        except Exception:  # noqa: BLE001 - try the next name
            continue
        if all(llb.address_of_symbol(s) for s in ("SHA256_Init", "SHA256_Update", "SHA256_Final")):
            return True
    return False


HAVE_OPENSSL = _load_libcrypto()
if not HAVE_OPENSSL:
    # numba's cache key does not see which SHA-256 a kernel was compiled with: keep the portable
    # build's cache apart from the usual one
    import tempfile

    nb.config.CACHE_DIR = os.path.join(tempfile.gettempdir(), "qfs-replay-portable-sha")

if HAVE_OPENSSL:
    _sha_init = types.ExternalFunction("SHA256_Init", types.int32(types.voidptr))
    _sha_update = types.ExternalFunction("SHA256_Update", types.int32(types.voidptr, types.voidptr, types.uintp))
    _sha_final = types.ExternalFunction("SHA256_Final", types.int32(types.voidptr, types.voidptr))

    @nb.njit(cache=True, nogil=True, inline="always")
    def sha256_into(src, start, length, dst, dst_off, ctx):
        """SHA-256 of src[start:start+length] into dst[dst_off:dst_off+32] (ctx: 256 scratch bytes)."""
        _sha_init(ctx.ctypes.data)
        if length > 0:
            _sha_update(ctx.ctypes.data, src[start:].ctypes.data, length)
        _sha_final(dst[dst_off:].ctypes.data, ctx.ctypes.data)
else:
    _K = np.array([
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ], dtype=np.uint32)
    _H0 = np.array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                    0x5be0cd19], dtype=np.uint32)

    @nb.njit(cache=True, nogil=True, inline="always")
    def _rotr(x, n):
        return ((x >> np.uint32(n)) | (x << np.uint32(32 - n))) & np.uint32(0xFFFFFFFF)

    @nb.njit(cache=True, nogil=True)
    def sha256_into(src, start, length, dst, dst_off, ctx):
        """Portable SHA-256 (FIPS 180-4) of src[start:start+length] into dst[dst_off:dst_off+32]."""
        h = _H0.copy()
        w = np.empty(64, np.uint32)
        total = length + 9
        nblocks = (total + 63) // 64
        block = np.zeros(64, np.uint8)
        bits = np.uint64(length) * np.uint64(8)
        for b in range(nblocks):
            for j in range(64):
                p = b * 64 + j
                if p < length:
                    block[j] = src[start + p]
                elif p == length:
                    block[j] = 0x80
                elif p >= nblocks * 64 - 8:
                    block[j] = np.uint8((bits >> np.uint64(8 * (nblocks * 64 - 1 - p))) & np.uint64(0xFF))
                else:
                    block[j] = 0
            for t in range(16):
                w[t] = (np.uint32(block[4 * t]) << np.uint32(24)) | (np.uint32(block[4 * t + 1]) << np.uint32(16)) \
                    | (np.uint32(block[4 * t + 2]) << np.uint32(8)) | np.uint32(block[4 * t + 3])
            for t in range(16, 64):
                s0 = _rotr(w[t - 15], 7) ^ _rotr(w[t - 15], 18) ^ (w[t - 15] >> np.uint32(3))
                s1 = _rotr(w[t - 2], 17) ^ _rotr(w[t - 2], 19) ^ (w[t - 2] >> np.uint32(10))
                w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & np.uint32(0xFFFFFFFF)
            a, b_, c, d, e, f, g, hh = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
            for t in range(64):
                S1 = _rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)
                ch = (e & f) ^ (~e & g)
                t1 = (hh + S1 + ch + _K[t] + w[t]) & np.uint32(0xFFFFFFFF)
                S0 = _rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)
                mj = (a & b_) ^ (a & c) ^ (b_ & c)
                t2 = (S0 + mj) & np.uint32(0xFFFFFFFF)
                hh = g
                g = f
                f = e
                e = (d + t1) & np.uint32(0xFFFFFFFF)
                d = c
                c = b_
                b_ = a
                a = (t1 + t2) & np.uint32(0xFFFFFFFF)
            h[0] += a
            h[1] += b_
            h[2] += c
            h[3] += d
            h[4] += e
            h[5] += f
            h[6] += g
            h[7] += hh
        for t in range(8):
            dst[dst_off + 4 * t] = np.uint8(h[t] >> np.uint32(24))
            dst[dst_off + 4 * t + 1] = np.uint8((h[t] >> np.uint32(16)) & np.uint32(0xFF))
            dst[dst_off + 4 * t + 2] = np.uint8((h[t] >> np.uint32(8)) & np.uint32(0xFF))
            dst[dst_off + 4 * t + 3] = np.uint8(h[t] & np.uint32(0xFF))


@nb.njit(cache=True, nogil=True)
def sha256_many(data, offs, out):
    """Digests of data[offs[i]:offs[i+1]] into out (n, 32)."""
    ctx = np.empty(256, np.uint8)
    flat = out.reshape(-1)
    for i in range(len(offs) - 1):
        sha256_into(data, offs[i], offs[i + 1] - offs[i], flat, 32 * i, ctx)


# ---------------------------------------------------------------------------------------------
# The hash chain


@nb.njit(cache=True, nogil=True, inline="always")
def _write_int(buf, pos, v):
    """Decimal digits of an int64 (as Python's str(int)) at buf[pos:]; returns the new position."""
    if v == 0:
        buf[pos] = 48
        return pos + 1
    neg = v < 0
    if neg:
        u = np.uint64(-(v + 1)) + np.uint64(1)
        buf[pos] = 45
        pos += 1
    else:
        u = np.uint64(v)
    n = 0
    t = u
    while t > 0:
        t //= np.uint64(10)
        n += 1
    p = pos + n - 1
    while u > 0:
        buf[p] = np.uint8(48 + u % np.uint64(10))
        u //= np.uint64(10)
        p -= 1
    return pos + n


@nb.njit(cache=True, nogil=True)
def _chain_range(lo, hi, seq, et_offs, et_data, pl_offs, pl_data, ph_offs, ph_data, out):
    ctx = np.empty(256, np.uint8)
    cap = 4096
    buf = np.empty(cap, np.uint8)
    flat = out.reshape(-1)
    for i in range(lo, hi):
        n = (ph_offs[i + 1] - ph_offs[i]) + 22 + (et_offs[i + 1] - et_offs[i]) + (pl_offs[i + 1] - pl_offs[i]) + 3
        if n > cap:
            cap = 2 * n
            buf = np.empty(cap, np.uint8)
        p = 0
        for k in range(ph_offs[i], ph_offs[i + 1]):
            buf[p] = ph_data[k]
            p += 1
        buf[p] = 124
        p = _write_int(buf, p + 1, seq[i])
        buf[p] = 124
        p += 1
        for k in range(et_offs[i], et_offs[i + 1]):
            buf[p] = et_data[k]
            p += 1
        buf[p] = 124
        p += 1
        m = pl_offs[i + 1] - pl_offs[i]
        buf[p:p + m] = pl_data[pl_offs[i]:pl_offs[i + 1]]
        p += m
        sha256_into(buf, 0, p, flat, 32 * i, ctx)


@nb.njit(cache=True, nogil=True)
def chain_digests(seq, et_offs, et_data, pl_offs, pl_data, ph_offs, ph_data, out):
    _chain_range(0, len(seq), seq, et_offs, et_data, pl_offs, pl_data, ph_offs, ph_data, out)


HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()
# the two lowercase hex digits of a byte as a little-endian 16-bit word
HEX_PAIRS = np.array([HEX_DIGITS[b >> 4] | (np.uint64(HEX_DIGITS[b & 15]) << 8) for b in range(256)], np.uint64)


@nb.njit(cache=True, nogil=True, inline="always")
def _same_bytes(x, a, y, b, m):
    for k in range(m):
        if x[a + k] != y[b + k]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def chain_checks(dig, eh_offs, eh_data, ph_offs, ph_data, last, hash_ok, link_ok):
    """The integrity and linkage checks of ``chain.verify_batch``, from the rows' digests ``dig``
    (n, 32): hash_ok[i] when event_hash i is the lowercase hex of dig[i]; link_ok[i] when
    prev_hash i equals event_hash i-1 (``last``, the previous batch's last one, for row 0), byte
    for byte. Hashes at 8-byte aligned offsets (the usual 64-byte values) are compared a word at a
    time (``eh_data``/``ph_data`` must then start 8-byte aligned, as Arrow buffers do)."""
    n = len(hash_ok)
    ehw = eh_data[:len(eh_data) - len(eh_data) % 8].view(np.uint64)
    phw = ph_data[:len(ph_data) - len(ph_data) % 8].view(np.uint64)
    for i in range(n):
        a = eh_offs[i]
        ok = eh_offs[i + 1] - a == 64
        if ok and a % 8 == 0:
            w = a // 8
            for k in range(8):
                v = (HEX_PAIRS[dig[i, 4 * k]] | (HEX_PAIRS[dig[i, 4 * k + 1]] << np.uint64(16))
                     | (HEX_PAIRS[dig[i, 4 * k + 2]] << np.uint64(32)) | (HEX_PAIRS[dig[i, 4 * k + 3]] << np.uint64(48)))
                if ehw[w + k] != v:
                    ok = False
                    break
        elif ok:
            for k in range(32):
                d = dig[i, k]
                if eh_data[a + 2 * k] != HEX_DIGITS[d >> 4] or eh_data[a + 2 * k + 1] != HEX_DIGITS[d & 15]:
                    ok = False
                    break
        hash_ok[i] = ok
        p = ph_offs[i]
        m = ph_offs[i + 1] - p
        if i == 0:
            ok = m == len(last) and _same_bytes(ph_data, p, last, 0, m)
        else:
            q = eh_offs[i - 1]
            ok = m == eh_offs[i] - q
            if ok:
                if m == 64 and p % 8 == 0 and q % 8 == 0:
                    for k in range(8):
                        if phw[p // 8 + k] != ehw[q // 8 + k]:
                            ok = False
                            break
                else:
                    ok = _same_bytes(ph_data, p, eh_data, q, m)
        link_ok[i] = ok


# ---------------------------------------------------------------------------------------------
# Payload parsing (canonical JSON only; everything else goes to the reference parser)

K_STR, K_STR_OR_NULL, K_I64, K_I32, K_I16 = 0, 1, 2, 3, 4
MAX_FIELDS = 6


@nb.njit(cache=True, nogil=True)
def parse_payloads(codes, pl_offs, pl_data, spec_n, spec_kind, spec_koff, spec_klen, spec_keys, fs, fe, fv, ok):
    """For every row whose code is an event type (0..7): ok[i] = 1 and its fields in fs/fe (string
    byte ranges in pl_data; fs = -1 for a null) and fv (integers) when the payload is exactly the
    canonical JSON of the type's fields (``spec_*``: sorted keys as ``"name":`` literals, kinds);
    else ok[i] = 0 (reference parser)."""
    n = len(codes)
    for i in range(n):
        ok[i] = 0
        c = codes[i]
        if c < 0 or c > 7:
            continue
        p = pl_offs[i]
        end = pl_offs[i + 1]
        good = True
        for f in range(spec_n[c]):
            # "{" before the first key, "," before the others
            if p >= end:
                good = False
                break
            if pl_data[p] != (123 if f == 0 else 44):
                good = False
                break
            p += 1
            ko = spec_koff[c, f]
            kl = spec_klen[c, f]
            if p + kl > end:
                good = False
                break
            for k in range(kl):
                if pl_data[p + k] != spec_keys[ko + k]:
                    good = False
                    break
            if not good:
                break
            p += kl
            kind = spec_kind[c, f]
            if kind == K_STR or kind == K_STR_OR_NULL:
                if kind == K_STR_OR_NULL and p + 4 <= end and pl_data[p] == 110 and pl_data[p + 1] == 117 \
                        and pl_data[p + 2] == 108 and pl_data[p + 3] == 108:
                    fs[i, f] = -1
                    fe[i, f] = -1
                    p += 4
                    continue
                if p >= end or pl_data[p] != 34:
                    good = False
                    break
                p += 1
                s = p
                while p < end:
                    b = pl_data[p]
                    if b == 34:
                        break
                    if b < 32 or b > 126 or b == 92:
                        good = False
                        break
                    p += 1
                if not good or p >= end:
                    good = False
                    break
                fs[i, f] = s
                fe[i, f] = p
                p += 1
            else:
                neg = False
                if p < end and pl_data[p] == 45:
                    neg = True
                    p += 1
                s = p
                v = np.uint64(0)
                while p < end and 48 <= pl_data[p] <= 57:
                    if p - s >= 19:
                        good = False
                        break
                    v = v * np.uint64(10) + np.uint64(pl_data[p] - 48)
                    p += 1
                nd = p - s
                if not good or nd == 0 or (nd > 1 and pl_data[s] == 48) or (neg and v == 0):
                    good = False
                    break
                if neg:
                    if v > np.uint64(9223372036854775808):
                        good = False
                        break
                    x = -np.int64(v - np.uint64(1)) - 1
                else:
                    if v > np.uint64(9223372036854775807):
                        good = False
                        break
                    x = np.int64(v)
                if kind == K_I32 and (x < -2147483648 or x > 2147483647):
                    good = False
                    break
                if kind == K_I16 and (x < -32768 or x > 32767):
                    good = False
                    break
                fv[i, f] = x
        if good and p + 1 == end and pl_data[p] == 125:
            ok[i] = 1


# ---------------------------------------------------------------------------------------------
# Hash tables: key bytes -> dense id (append-only), and (object id, shard_index) -> shard id


@nb.njit(cache=True, nogil=True, inline="always")
def _hash_bytes(data, s, e):
    h = np.uint64(0xCBF29CE484222325)
    for k in range(s, e):
        h = (h ^ np.uint64(data[k])) * np.uint64(0x100000001B3)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@nb.njit(cache=True, nogil=True, inline="always")
def kt_find(kt, data, s, e):
    """Id of key data[s:e] in key table kt, or -1. kt = (slots, koff, kheap, meta[count, mask])."""
    slots, koff, kheap, meta = kt
    mask = np.uint64(meta[1])
    pos = _hash_bytes(data, s, e) & mask
    n = e - s
    while True:
        idx = slots[pos]
        if idx < 0:
            return -1
        a = koff[idx]
        if koff[idx + 1] - a == n:
            same = True
            for k in range(n):
                if kheap[a + k] != data[s + k]:
                    same = False
                    break
            if same:
                return idx
        pos = (pos + np.uint64(1)) & mask


@nb.njit(cache=True, nogil=True, inline="always")
def kt_insert(kt, data, s, e):
    """Insert key data[s:e] (known absent); returns its id. Capacity is checked by the caller."""
    slots, koff, kheap, meta = kt
    mask = np.uint64(meta[1])
    pos = _hash_bytes(data, s, e) & mask
    while slots[pos] >= 0:
        pos = (pos + np.uint64(1)) & mask
    idx = meta[0]
    a = koff[idx]
    n = e - s
    kheap[a:a + n] = data[s:e]
    koff[idx + 1] = a + n
    slots[pos] = idx
    meta[0] = idx + 1
    return idx


@nb.njit(cache=True, nogil=True, inline="always")
def kt_get_or_add(kt, data, s, e):
    """(id, True) after inserting key data[s:e], or (its id, False) when present: one probe."""
    slots, koff, kheap, meta = kt
    mask = np.uint64(meta[1])
    pos = _hash_bytes(data, s, e) & mask
    n = e - s
    while True:
        idx = slots[pos]
        if idx < 0:
            break
        a = koff[idx]
        if koff[idx + 1] - a == n:
            same = True
            for k in range(n):
                if kheap[a + k] != data[s + k]:
                    same = False
                    break
            if same:
                return np.int64(idx), False
        pos = (pos + np.uint64(1)) & mask
    idx = meta[0]
    a = koff[idx]
    kheap[a:a + n] = data[s:e]
    koff[idx + 1] = a + n
    slots[pos] = idx
    meta[0] = idx + 1
    return np.int64(idx), True


@nb.njit(cache=True, nogil=True)
def kt_rehash(koff, kheap, count, slots):
    """Fill a new (all -1) slots array with ids 0..count-1."""
    mask = np.uint64(len(slots) - 1)
    for idx in range(count):
        pos = _hash_bytes(kheap, koff[idx], koff[idx + 1]) & mask
        while slots[pos] >= 0:
            pos = (pos + np.uint64(1)) & mask
        slots[pos] = idx


@nb.njit(cache=True, nogil=True, inline="always")
def _shard_hash(obj, idx):
    """Slot hash of (object id, shard_index): a hash of the object plus the index, so that the
    shards of one object sit side by side in the table (one cache line for the usual 6-16)."""
    h = np.uint64(obj) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return h + (np.uint64(idx) & np.uint64(0xFFFFFFFF))


@nb.njit(cache=True, nogil=True)
def shard_rehash(s_obj, s_idx, count, slots):
    mask = np.uint64(len(slots) - 1)
    for sid in range(count):
        pos = _shard_hash(s_obj[sid], s_idx[sid]) & mask
        while slots[pos] >= 0:
            pos = (pos + np.uint64(1)) & mask
        slots[pos] = sid


# ---------------------------------------------------------------------------------------------
# Canonical row texts and the set-hash accumulators


@nb.njit(cache=True, nogil=True, inline="always")
def _lit(buf, p, lit):
    m = len(lit)
    buf[p:p + m] = lit
    return p + m


@nb.njit(cache=True, nogil=True)
def _str(buf, p, src, s, e):
    """A JSON string as json.dumps(ensure_ascii=False) writes it (encode_basestring)."""
    buf[p] = 34
    p += 1
    for k in range(s, e):
        b = src[k]
        if b == 34 or b == 92:
            buf[p] = 92
            buf[p + 1] = b
            p += 2
        elif b >= 32:
            buf[p] = b
            p += 1
        elif b == 8:
            buf[p] = 92
            buf[p + 1] = 98
            p += 2
        elif b == 12:
            buf[p] = 92
            buf[p + 1] = 102
            p += 2
        elif b == 10:
            buf[p] = 92
            buf[p + 1] = 110
            p += 2
        elif b == 13:
            buf[p] = 92
            buf[p + 1] = 114
            p += 2
        elif b == 9:
            buf[p] = 92
            buf[p + 1] = 116
            p += 2
        else:
            buf[p] = 92
            buf[p + 1] = 117
            buf[p + 2] = 48
            buf[p + 3] = 48
            hi = b >> 4
            lo = b & 15
            buf[p + 4] = 48 + hi
            buf[p + 5] = (48 + lo) if lo < 10 else (87 + lo)
            p += 6
    buf[p] = 34
    return p + 1


@nb.njit(cache=True, nogil=True)
def _write_i128(buf, p, hi, lo):
    """Decimal text of the 128-bit two's complement integer (hi: int64, lo: uint64)."""
    if (hi == 0 and lo < np.uint64(1 << 63)) or (hi == -1 and lo >= np.uint64(1 << 63)):
        return _write_int(buf, p, np.int64(lo))
    uhi = np.uint64(hi)
    ulo = lo
    if hi < 0:
        buf[p] = 45
        p += 1
        ulo = ~ulo + np.uint64(1)
        uhi = ~uhi + (np.uint64(1) if ulo == 0 else np.uint64(0))
    limbs = np.empty(4, np.uint64)
    limbs[0] = uhi >> np.uint64(32)
    limbs[1] = uhi & np.uint64(0xFFFFFFFF)
    limbs[2] = ulo >> np.uint64(32)
    limbs[3] = ulo & np.uint64(0xFFFFFFFF)
    digits = np.empty(40, np.uint8)
    nd = 0
    while limbs[0] or limbs[1] or limbs[2] or limbs[3]:
        r = np.uint64(0)
        for k in range(4):
            cur = (r << np.uint64(32)) | limbs[k]
            limbs[k] = cur // np.uint64(10)
            r = cur % np.uint64(10)
        digits[nd] = np.uint8(48 + r)
        nd += 1
    for k in range(nd):
        buf[p + k] = digits[nd - 1 - k]
    return p + nd


@nb.njit(cache=True, nogil=True, inline="always")
def _acc_add(acc, c, dig, sign):
    """acc[c] (+|-)= the big-endian 256-bit integer dig[0:32], mod 2**256 (8 limbs of 32 bits)."""
    carry = np.int64(0)
    for k in range(7, -1, -1):
        limb = (np.int64(dig[4 * k]) << 24) | (np.int64(dig[4 * k + 1]) << 16) | (np.int64(dig[4 * k + 2]) << 8) \
            | np.int64(dig[4 * k + 3])
        v = np.int64(acc[c, k]) + sign * limb + carry
        carry = v >> 32  # floor division by 2**32 (arithmetic shift)
        acc[c, k] = np.uint64(v & 0xFFFFFFFF)


# Literal pieces of the four row texts (canonical JSON with sorted keys).
def _b(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8).copy()


N_CAP, N_NODE, N_REGION, N_STAKE, N_STATUS = (_b('{"capacity_bytes":'), _b(',"node_id":'), _b(',"region":'),
                                              _b(',"stake_nod":'), _b(',"status":'))
O_CH, O_DS, O_DEL, O_OID, O_SIZE, O_TS, O_VER = (_b('{"content_hash":'), _b(',"data_shards":'), _b(',"deleted":'),
                                                 _b(',"object_id":'), _b(',"size_bytes":'), _b(',"total_shards":'),
                                                 _b(',"version":'))
S_NODE, S_OID, S_BYTES, S_HASH, S_IDX = (_b('{"node_id":'), _b(',"object_id":'), _b(',"shard_bytes":'),
                                         _b(',"shard_hash":'), _b(',"shard_index":'))
L_ATR, L_NOD, L_PARTY = _b('{"atr_paid":'), _b(',"nod_earned":'), _b(',"party_id":')
TRUE, FALSE, CLOSE = _b("true"), _b("false"), _b("}")
STATUS_TEXT = _b('"active""degraded""failed""decommissioned"')
STATUS_OFF = np.array([0, 8, 18, 26, 42], dtype=np.int64)


@nb.njit(cache=True, nogil=True)
def _node_text(buf, i, ktN, N):
    _, koff, kheap, _ = ktN
    n_cap, n_stake, n_status, n_roff, n_rlen, rheap = N
    p = _lit(buf, 0, N_CAP)
    p = _write_int(buf, p, n_cap[i])
    p = _lit(buf, p, N_NODE)
    p = _str(buf, p, kheap, koff[i], koff[i + 1])
    p = _lit(buf, p, N_REGION)
    p = _str(buf, p, rheap, n_roff[i], n_roff[i] + n_rlen[i])
    p = _lit(buf, p, N_STAKE)
    p = _write_int(buf, p, n_stake[i])
    p = _lit(buf, p, N_STATUS)
    st = n_status[i]
    m = STATUS_OFF[st + 1] - STATUS_OFF[st]
    buf[p:p + m] = STATUS_TEXT[STATUS_OFF[st]:STATUS_OFF[st + 1]]
    p += m
    return _lit(buf, p, CLOSE)


@nb.njit(cache=True, nogil=True)
def _object_text(buf, i, ktO, O):
    _, koff, kheap, _ = ktO
    o_ver, o_size, o_ds, o_ts, o_del, o_coff, o_clen, o_first, cheap = O
    p = _lit(buf, 0, O_CH)
    p = _str(buf, p, cheap, o_coff[i], o_coff[i] + o_clen[i])
    p = _lit(buf, p, O_DS)
    p = _write_int(buf, p, np.int64(o_ds[i]))
    p = _lit(buf, p, O_DEL)
    p = _lit(buf, p, TRUE if o_del[i] else FALSE)
    p = _lit(buf, p, O_OID)
    p = _str(buf, p, kheap, koff[i], koff[i + 1])
    p = _lit(buf, p, O_SIZE)
    p = _write_int(buf, p, o_size[i])
    p = _lit(buf, p, O_TS)
    p = _write_int(buf, p, np.int64(o_ts[i]))
    p = _lit(buf, p, O_VER)
    p = _write_int(buf, p, o_ver[i])
    return _lit(buf, p, CLOSE)


@nb.njit(cache=True, nogil=True)
def _shard_text(buf, sid, ktN, ktO, S):
    _, nkoff, nkheap, _ = ktN
    _, okoff, okheap, _ = ktO
    s_slots, s_obj, s_idx, s_node, s_pres, s_bytes, s_hoff, s_hlen, s_next, sheap, s_hbin = S
    nd = s_node[sid]
    ob = s_obj[sid]
    p = _lit(buf, 0, S_NODE)
    p = _str(buf, p, nkheap, nkoff[nd], nkoff[nd + 1])
    p = _lit(buf, p, S_OID)
    p = _str(buf, p, okheap, okoff[ob], okoff[ob + 1])
    p = _lit(buf, p, S_BYTES)
    p = _write_int(buf, p, s_bytes[sid])
    p = _lit(buf, p, S_HASH)
    if s_hlen[sid] < 0:
        buf[p] = 34
        p = _unhex(s_hbin[sid], buf, p + 1)
        buf[p] = 34
        p += 1
    else:
        p = _str(buf, p, sheap, s_hoff[sid], s_hoff[sid] + s_hlen[sid])
    p = _lit(buf, p, S_IDX)
    p = _write_int(buf, p, np.int64(s_idx[sid]))
    return _lit(buf, p, CLOSE)


@nb.njit(cache=True, nogil=True, inline="always")
def _is_hex64(data, s, e):
    """Whether data[s:e] is 64 lowercase hex digits (a SHA-256 hex digest: stored in 32 bytes)."""
    if e - s != 64:
        return False
    for k in range(s, e):
        b = data[k]
        if not ((48 <= b <= 57) or (97 <= b <= 102)):
            return False
    return True


@nb.njit(cache=True, nogil=True, inline="always")
def _pack_hex(data, s, out):
    for k in range(32):
        hi = data[s + 2 * k]
        lo = data[s + 2 * k + 1]
        hi = hi - 48 if hi <= 57 else hi - 87
        lo = lo - 48 if lo <= 57 else lo - 87
        out[k] = (hi << 4) | lo


@nb.njit(cache=True, nogil=True, inline="always")
def _unhex(src, buf, p):
    """The 64 hex digits of a 32-byte hash, written at buf[p:p + 64] (a digit pair per byte from
    ``HEX_PAIRS``: 2.2x faster than computing each digit, which the saved state's 5.7M shard
    hashes and every shard row's text pay for)."""
    for k in range(32):
        v = HEX_PAIRS[src[k]]
        buf[p] = np.uint8(v & np.uint64(0xFF))
        buf[p + 1] = np.uint8(v >> np.uint64(8))
        p += 2
    return p


@nb.njit(cache=True, nogil=True)
def _ledger_text(buf, i, ktP, L):
    _, koff, kheap, _ = ktP
    l_ahi, l_alo, l_nhi, l_nlo = L
    p = _lit(buf, 0, L_ATR)
    p = _write_i128(buf, p, l_ahi[i], l_alo[i])
    p = _lit(buf, p, L_NOD)
    p = _write_i128(buf, p, l_nhi[i], l_nlo[i])
    p = _lit(buf, p, L_PARTY)
    p = _str(buf, p, kheap, koff[i], koff[i + 1])
    return _lit(buf, p, CLOSE)


@nb.njit(cache=True, nogil=True, inline="always")
def _need(buf, n):
    if len(buf) < n:
        return np.empty(2 * n, np.uint8)
    return buf


# ---------------------------------------------------------------------------------------------
# Apply

C_NR, C_NS, C_OW, C_OD, C_SP, C_SM, C_FC, C_RP = 0, 1, 2, 3, 4, 5, 6, 7
# invalid-event reason codes (formatted in columnar.py)
R_SP_UNKNOWN_OBJ, R_SP_DELETED, R_SP_UNKNOWN_NODE = 1, 2, 3
R_DUP_TX, R_RP_UNKNOWN_NODE, R_DUP_REWARD = 4, 5, 6
R_OW_VERSION, R_OD_UNKNOWN, R_OD_VERSION = 7, 8, 9
R_SM_UNKNOWN_OBJ, R_SM_DELETED, R_SM_UNKNOWN_SHARD, R_SM_FROM, R_SM_TO_UNKNOWN = 10, 11, 12, 13, 14
R_NS_UNKNOWN, R_NS_STATUS, R_NR_EXISTS = 15, 16, 17
STATUS_WORDS = _b("activedegradedfaileddecommissioned")
STATUS_WOFF = np.array([0, 6, 14, 20, 34], dtype=np.int64)

# capacity shortfalls reported by apply_events (bit flags): the caller grows and resumes
G_NODES, G_OBJECTS, G_SHARDS, G_PARTIES, G_TX, G_REWARDS, G_RHEAP, G_CHEAP, G_SHEAP = (1, 2, 4, 8, 16, 32, 64, 128,
                                                                                       256)


@nb.njit(cache=True, nogil=True, inline="always")
def _kt_room(kt, cap_ids, nbytes):
    slots, koff, kheap, meta = kt
    cnt = meta[0]
    return cnt + 1 <= cap_ids and 2 * (cnt + 1) <= len(slots) and koff[cnt] + nbytes <= len(kheap)


@nb.njit(cache=True, nogil=True, inline="always")
def _mark(dflag, dlist, dmeta, i):
    if dflag[i] == 0:
        dflag[i] = 1
        dlist[dmeta[0]] = i
        dmeta[0] += 1
        return True
    return False


@nb.njit(cache=True, nogil=True)
def _sub_object(i, ktO, O, acc, buf, ctx, dig):
    buf = _need(buf, 8 * (ktO[1][i + 1] - ktO[1][i] + O[6][i]) + 256)
    p = _object_text(buf, i, ktO, O)
    sha256_into(buf, 0, p, dig, 0, ctx)
    _acc_add(acc, 1, dig, -1)
    return buf


@nb.njit(cache=True, nogil=True)
def _sub_shard(sid, ktN, ktO, S, acc, buf, ctx, dig):
    ob = S[1][sid]
    nd = S[3][sid]
    buf = _need(buf, 8 * (ktO[1][ob + 1] - ktO[1][ob] + ktN[1][nd + 1] - ktN[1][nd] + S[7][sid]) + 256)
    p = _shard_text(buf, sid, ktN, ktO, S)
    sha256_into(buf, 0, p, dig, 0, ctx)
    _acc_add(acc, 2, dig, -1)
    return buf


@nb.njit(cache=True, nogil=True, inline="always")
def _add128(hi, lo, i, amt):
    old = lo[i]
    new = old + np.uint64(amt)
    lo[i] = new
    carry = 1 if new < old else 0
    hi[i] += (-1 if amt < 0 else 0) + carry


@nb.njit(cache=True, nogil=True)
def apply_events(a, b, codes, fs, fe, fv, data, inv, inv_arg,
                 ktN, ktO, ktP, ktT, ktR, N, O, S, L, Nmeta, Ometa, Smeta,
                 Dn, Do, Ds, Dl, acc, scratch):
    """Apply rows [a, b) in order. The caller has reserved room for every row's inserts
    (``columnar._State.reserve``). Nmeta/Ometa/Smeta: [count, heap used, heap live] of the string
    heaps (Smeta[0]: the shard count)."""
    n_cap, n_stake, n_status, n_roff, n_rlen, rheap = N
    o_ver, o_size, o_ds, o_ts, o_del, o_coff, o_clen, o_first, cheap = O
    s_slots, s_obj, s_idx, s_node, s_pres, s_bytes, s_hoff, s_hlen, s_next, sheap, s_hbin = S
    l_ahi, l_alo, l_nhi, l_nlo = L
    dnf, dnl, dnm = Dn
    dof, dol, dom = Do
    dsf, dsl, dsm = Ds
    dlf, dll, dlm = Dl
    ctx = np.empty(256, np.uint8)
    dig = np.empty(32, np.uint8)
    buf = scratch
    smask = np.uint64(len(s_slots) - 1)
    for i in range(a, b):
        c = codes[i]
        if c < 0 or c > 7:
            continue
        if c == C_SP:
            ob = kt_find(ktO, data, fs[i, 1], fe[i, 1])
            if ob < 0:
                inv[i] = R_SP_UNKNOWN_OBJ
                continue
            if o_del[ob]:
                inv[i] = R_SP_DELETED
                continue
            nd = kt_find(ktN, data, fs[i, 0], fe[i, 0])
            if nd < 0:
                inv[i] = R_SP_UNKNOWN_NODE
                continue
            idx = fv[i, 4]
            pos = _shard_hash(ob, idx) & smask
            sid = -1
            while s_slots[pos] >= 0:
                t = s_slots[pos]
                if s_obj[t] == ob and s_idx[t] == idx:
                    sid = t
                    break
                pos = (pos + np.uint64(1)) & smask
            if sid < 0:
                sid = Smeta[0]
                Smeta[0] += 1
                s_slots[pos] = sid
                s_obj[sid] = ob
                s_idx[sid] = idx
                s_pres[sid] = 0
                s_next[sid] = o_first[ob]
                o_first[ob] = sid
            if _mark(dsf, dsl, dsm, sid) and s_pres[sid]:
                buf = _sub_shard(sid, ktN, ktO, S, acc, buf, ctx, dig)
            if s_pres[sid] and s_hlen[sid] > 0:
                Smeta[2] -= s_hlen[sid]
            s_pres[sid] = 1
            s_node[sid] = nd
            s_bytes[sid] = fv[i, 2]
            if _is_hex64(data, fs[i, 3], fe[i, 3]):
                _pack_hex(data, fs[i, 3], s_hbin[sid])
                s_hlen[sid] = -1
            else:
                hl = fe[i, 3] - fs[i, 3]
                h0 = Smeta[1]
                sheap[h0:h0 + hl] = data[fs[i, 3]:fe[i, 3]]
                Smeta[1] = h0 + hl
                Smeta[2] += hl
                s_hoff[sid] = h0
                s_hlen[sid] = hl
        elif c == C_FC:
            t, fresh = kt_get_or_add(ktT, data, fs[i, 4], fe[i, 4])
            if not fresh:
                inv[i] = R_DUP_TX
                continue
            pt, fresh = kt_get_or_add(ktP, data, fs[i, 0], fe[i, 0])
            if fresh:
                l_ahi[pt] = 0
                l_alo[pt] = 0
                l_nhi[pt] = 0
                l_nlo[pt] = 0
            _mark(dlf, dll, dlm, pt)
            _add128(l_ahi, l_alo, pt, fv[i, 1])
        elif c == C_RP:
            nd = kt_find(ktN, data, fs[i, 3], fe[i, 3])
            if nd < 0:
                inv[i] = R_RP_UNKNOWN_NODE
                continue
            t, fresh = kt_get_or_add(ktR, data, fs[i, 4], fe[i, 4])
            if not fresh:
                inv[i] = R_DUP_REWARD
                continue
            pt, fresh = kt_get_or_add(ktP, data, fs[i, 3], fe[i, 3])
            if fresh:
                l_ahi[pt] = 0
                l_alo[pt] = 0
                l_nhi[pt] = 0
                l_nlo[pt] = 0
            _mark(dlf, dll, dlm, pt)
            _add128(l_nhi, l_nlo, pt, fv[i, 0])
        elif c == C_OW:
            ob, fresh = kt_get_or_add(ktO, data, fs[i, 2], fe[i, 2])
            ver = fv[i, 5]
            if fresh:
                o_first[ob] = -1
                _mark(dof, dol, dom, ob)
            else:
                if ver <= o_ver[ob]:
                    inv[i] = R_OW_VERSION
                    inv_arg[i] = o_ver[ob]
                    continue
                if _mark(dof, dol, dom, ob):
                    buf = _sub_object(ob, ktO, O, acc, buf, ctx, dig)
                Ometa[2] -= o_clen[ob]
            o_ver[ob] = ver
            o_size[ob] = fv[i, 3]
            o_ds[ob] = fv[i, 1]
            o_ts[ob] = fv[i, 4]
            o_del[ob] = 0
            hl = fe[i, 0] - fs[i, 0]
            h0 = Ometa[1]
            cheap[h0:h0 + hl] = data[fs[i, 0]:fe[i, 0]]
            Ometa[1] = h0 + hl
            Ometa[2] += hl
            o_coff[ob] = h0
            o_clen[ob] = hl
        elif c == C_OD:
            ob = kt_find(ktO, data, fs[i, 0], fe[i, 0])
            if ob < 0:
                inv[i] = R_OD_UNKNOWN
                continue
            ver = fv[i, 1]
            if ver <= o_ver[ob]:
                inv[i] = R_OD_VERSION
                inv_arg[i] = o_ver[ob]
                continue
            if _mark(dof, dol, dom, ob):
                buf = _sub_object(ob, ktO, O, acc, buf, ctx, dig)
            o_ver[ob] = ver
            o_del[ob] = 1
            sid = o_first[ob]
            while sid >= 0:
                if s_pres[sid]:
                    if _mark(dsf, dsl, dsm, sid):
                        buf = _sub_shard(sid, ktN, ktO, S, acc, buf, ctx, dig)
                    s_pres[sid] = 0
                    if s_hlen[sid] > 0:
                        Smeta[2] -= s_hlen[sid]
                sid = s_next[sid]
        elif c == C_SM:
            ob = kt_find(ktO, data, fs[i, 1], fe[i, 1])
            if ob < 0:
                inv[i] = R_SM_UNKNOWN_OBJ
                continue
            if o_del[ob]:
                inv[i] = R_SM_DELETED
                continue
            idx = fv[i, 2]
            pos = _shard_hash(ob, idx) & smask
            sid = -1
            while s_slots[pos] >= 0:
                t = s_slots[pos]
                if s_obj[t] == ob and s_idx[t] == idx:
                    sid = t
                    break
                pos = (pos + np.uint64(1)) & smask
            if sid < 0 or s_pres[sid] == 0:
                inv[i] = R_SM_UNKNOWN_SHARD
                continue
            frm = kt_find(ktN, data, fs[i, 0], fe[i, 0])
            if frm != s_node[sid]:
                inv[i] = R_SM_FROM
                inv_arg[i] = s_node[sid]
                continue
            to = kt_find(ktN, data, fs[i, 3], fe[i, 3])
            if to < 0:
                inv[i] = R_SM_TO_UNKNOWN
                continue
            if to != frm:
                if _mark(dsf, dsl, dsm, sid):
                    buf = _sub_shard(sid, ktN, ktO, S, acc, buf, ctx, dig)
                s_node[sid] = to
        elif c == C_NS:
            nd = kt_find(ktN, data, fs[i, 0], fe[i, 0])
            if nd < 0:
                inv[i] = R_NS_UNKNOWN
                continue
            st = -1
            ln = fe[i, 1] - fs[i, 1]
            for k in range(4):
                if STATUS_WOFF[k + 1] - STATUS_WOFF[k] == ln:
                    same = True
                    for q in range(ln):
                        if data[fs[i, 1] + q] != STATUS_WORDS[STATUS_WOFF[k] + q]:
                            same = False
                            break
                    if same:
                        st = k
                        break
            if st < 0:
                inv[i] = R_NS_STATUS
                continue
            _mark(dnf, dnl, dnm, nd)
            n_status[nd] = st
        elif c == C_NR:
            nd = kt_find(ktN, data, fs[i, 1], fe[i, 1])
            if nd >= 0:
                inv[i] = R_NR_EXISTS
                continue
            nd = kt_insert(ktN, data, fs[i, 1], fe[i, 1])
            _mark(dnf, dnl, dnm, nd)
            n_cap[nd] = fv[i, 0]
            n_stake[nd] = fv[i, 3]
            n_status[nd] = 0
            hl = fe[i, 2] - fs[i, 2]
            h0 = Nmeta[1]
            rheap[h0:h0 + hl] = data[fs[i, 2]:fe[i, 2]]
            Nmeta[1] = h0 + hl
            Nmeta[2] += hl
            n_roff[nd] = h0
            n_rlen[nd] = hl


@nb.njit(cache=True, nogil=True)
def acc_merge(acc, other):
    """acc += other, component by component, mod 2**256."""
    for c in range(4):
        carry = np.uint64(0)
        for k in range(7, -1, -1):
            v = acc[c, k] + other[c, k] + carry
            acc[c, k] = v & np.uint64(0xFFFFFFFF)
            carry = v >> np.uint64(32)


@nb.njit(cache=True, nogil=True)
def flush(ktN, ktO, ktP, N, O, S, L, Dn, Do, Ds, Dl, hcN, hpN, hcL, hpL, acc, part, nparts):
    """Add the hashes of part ``part`` of ``nparts`` of every dirty list to ``acc`` (see the module
    doc); the parts touch disjoint rows, so they can run in parallel, each with its own ``acc``.
    The caller empties the dirty lists (count = 0) once every part is done."""
    ctx = np.empty(256, np.uint8)
    dig = np.empty(32, np.uint8)
    buf = np.empty(1024, np.uint8)
    s_pres = S[4]
    s_hlen = S[7]
    # nodes (cached hashes)
    dnf, dnl, dnm = Dn
    _, nkoff, _, _ = ktN
    for j in range(part * dnm[0] // nparts, (part + 1) * dnm[0] // nparts):
        i = dnl[j]
        dnf[i] = 0
        buf = _need(buf, 8 * (nkoff[i + 1] - nkoff[i] + N[4][i]) + 256)
        if hpN[i]:
            _acc_add(acc, 0, hcN[i], -1)
        p = _node_text(buf, i, ktN, N)
        sha256_into(buf, 0, p, hcN[i], 0, ctx)
        hpN[i] = 1
        _acc_add(acc, 0, hcN[i], 1)
    # objects (old hash already subtracted at the first change)
    dof, dol, dom = Do
    _, okoff, _, _ = ktO
    for j in range(part * dom[0] // nparts, (part + 1) * dom[0] // nparts):
        i = dol[j]
        dof[i] = 0
        buf = _need(buf, 8 * (okoff[i + 1] - okoff[i] + O[6][i]) + 256)
        p = _object_text(buf, i, ktO, O)
        sha256_into(buf, 0, p, dig, 0, ctx)
        _acc_add(acc, 1, dig, 1)
    # shards
    dsf, dsl, dsm = Ds
    for j in range(part * dsm[0] // nparts, (part + 1) * dsm[0] // nparts):
        sid = dsl[j]
        dsf[sid] = 0
        if s_pres[sid]:
            ob = S[1][sid]
            nd = S[3][sid]
            buf = _need(buf, 8 * (okoff[ob + 1] - okoff[ob] + nkoff[nd + 1] - nkoff[nd] + s_hlen[sid]) + 256)
            p = _shard_text(buf, sid, ktN, ktO, S)
            sha256_into(buf, 0, p, dig, 0, ctx)
            _acc_add(acc, 2, dig, 1)
    # ledger (cached hashes)
    dlf, dll, dlm = Dl
    _, pkoff, _, _ = ktP
    for j in range(part * dlm[0] // nparts, (part + 1) * dlm[0] // nparts):
        i = dll[j]
        dlf[i] = 0
        buf = _need(buf, 8 * (pkoff[i + 1] - pkoff[i]) + 256)
        if hpL[i]:
            _acc_add(acc, 3, hcL[i], -1)
        p = _ledger_text(buf, i, ktP, L)
        sha256_into(buf, 0, p, hcL[i], 0, ctx)
        hpL[i] = 1
        _acc_add(acc, 3, hcL[i], 1)


@nb.njit(cache=True, nogil=True)
def gather(heap, off, ln, rows):
    """Concatenate heap[off[r]:off[r]+ln[r]] for r in rows: (offsets int64[n+1], data)."""
    n = len(rows)
    offs = np.empty(n + 1, np.int64)
    offs[0] = 0
    for j in range(n):
        offs[j + 1] = offs[j] + ln[rows[j]]
    out = np.empty(offs[n], np.uint8)
    for j in range(n):
        r = rows[j]
        out[offs[j]:offs[j + 1]] = heap[off[r]:off[r] + ln[r]]
    return offs, out


@nb.njit(cache=True, nogil=True)
def compact(heap, off, ln, live_rows, new_heap):
    """Copy the live strings into new_heap, rewriting off; returns the bytes used."""
    p = 0
    for j in range(len(live_rows)):
        r = live_rows[j]
        m = ln[r]
        new_heap[p:p + m] = heap[off[r]:off[r] + m]
        off[r] = p
        p += m
    return p


# ---------------------------------------------------------------------------------------------
# Loading a saved state


@nb.njit(cache=True, nogil=True)
def kt_insert_many(kt, data, offs, ids):
    """Insert keys data[offs[j]:offs[j+1]] (absent ones; capacity reserved by the caller); ids[j]
    receives each key's id. Returns how many were already present (a duplicate key)."""
    dup = 0
    for j in range(len(offs) - 1):
        i = kt_find(kt, data, offs[j], offs[j + 1])
        if i >= 0:
            dup += 1
        else:
            i = kt_insert(kt, data, offs[j], offs[j + 1])
        ids[j] = i
    return dup


@nb.njit(cache=True, nogil=True)
def kt_find_many(kt, data, offs, ids):
    for j in range(len(offs) - 1):
        ids[j] = kt_find(kt, data, offs[j], offs[j + 1])


@nb.njit(cache=True, nogil=True)
def link_shards(s_obj, s_idx, lo, hi, o_first, s_next, slots):
    """Link shards lo..hi-1 into their objects' lists and the shard key table; returns how many
    (object, shard_index) keys were already present (a duplicate key)."""
    mask = np.uint64(len(slots) - 1)
    dup = 0
    for sid in range(lo, hi):
        ob = s_obj[sid]
        pos = _shard_hash(ob, s_idx[sid]) & mask
        seen = False
        while slots[pos] >= 0:
            t = slots[pos]
            if s_obj[t] == ob and s_idx[t] == s_idx[sid]:
                seen = True
                break
            pos = (pos + np.uint64(1)) & mask
        if seen:
            dup += 1
            continue
        slots[pos] = sid
        s_next[sid] = o_first[ob]
        o_first[ob] = sid
    return dup


@nb.njit(cache=True, nogil=True)
def insert_needs(codes, fs, fe, out):
    """Upper bounds of the inserts of rows (codes/fs/fe): out = [node keys, node key bytes, region
    bytes, object keys, object key bytes, content hash bytes, shards, shard hash bytes, parties,
    party key bytes, tx ids, tx bytes, reward ids, reward bytes]."""
    out[:] = 0
    for i in range(len(codes)):
        c = codes[i]
        if c == C_SP:
            out[6] += 1
            out[7] += fe[i, 3] - fs[i, 3]
        elif c == C_FC:
            out[8] += 1
            out[9] += fe[i, 0] - fs[i, 0]
            out[10] += 1
            out[11] += fe[i, 4] - fs[i, 4]
        elif c == C_RP:
            out[8] += 1
            out[9] += fe[i, 3] - fs[i, 3]
            out[12] += 1
            out[13] += fe[i, 4] - fs[i, 4]
        elif c == C_OW:
            out[3] += 1
            out[4] += fe[i, 2] - fs[i, 2]
            out[5] += fe[i, 0] - fs[i, 0]
        elif c == C_NR:
            out[0] += 1
            out[1] += fe[i, 1] - fs[i, 1]
            out[2] += fe[i, 2] - fs[i, 2]


@nb.njit(cache=True, nogil=True)
def gather_shard_hashes(sheap, s_hoff, s_hlen, s_hbin, rows):
    """The shard_hash texts of shards ``rows`` (packed ones written back as hex)."""
    n = len(rows)
    offs = np.empty(n + 1, np.int64)
    offs[0] = 0
    for j in range(n):
        r = rows[j]
        offs[j + 1] = offs[j] + (64 if s_hlen[r] < 0 else s_hlen[r])
    out = np.empty(offs[n], np.uint8)
    for j in range(n):
        r = rows[j]
        if s_hlen[r] < 0:
            _unhex(s_hbin[r], out, offs[j])
        else:
            out[offs[j]:offs[j + 1]] = sheap[s_hoff[r]:s_hoff[r] + s_hlen[r]]
    return offs, out


@nb.njit(cache=True, nogil=True)
def put_shard_hashes(lo, offs, data, s_hoff, s_hlen, s_hbin, sheap, Smeta):
    """Store shard hashes data[offs[j]:offs[j+1]] of shards lo+j (heap room reserved by the caller)."""
    for j in range(len(offs) - 1):
        sid = lo + j
        a = offs[j]
        e = offs[j + 1]
        if _is_hex64(data, a, e):
            _pack_hex(data, a, s_hbin[sid])
            s_hlen[sid] = -1
        else:
            h0 = Smeta[1]
            sheap[h0:h0 + e - a] = data[a:e]
            Smeta[1] = h0 + e - a
            Smeta[2] += e - a
            s_hoff[sid] = h0
            s_hlen[sid] = e - a
