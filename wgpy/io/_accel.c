/* The optional accelerator: WireGuard transport messages sealed and opened a whole batch per
 * call, with ChaCha20-Poly1305 composed from OpenSSL's ChaCha20 and Poly1305 and the GIL
 * released for the batch.
 *
 * Byte loops only: counters, replay checks and keypair choice stay in Python (wgpy/io/accel.py
 * wraps this module; wgpy/core/transport.py is the reference it must match byte for byte). The
 * message layout is the whitepaper's section 5.4.6: type 4 and three zero bytes, the receiver
 * index and the counter little-endian, then the padded packet sealed under the nonce of 32 zero
 * bits and the counter, and the 16-byte tag. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define KEY_SIZE 32
#define HEADER_SIZE 16
#define TAG_SIZE 16
#define PADDING_MULTIPLE 16
#define VNET_HDR_SIZE 10
#define MESSAGE_TRANSPORT 4

static void put_le32(unsigned char *out, uint32_t value) {
    for (int i = 0; i < 4; i++) out[i] = (unsigned char)(value >> (8 * i));
}

static void put_le64(unsigned char *out, uint64_t value) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(value >> (8 * i));
}

/* The nonce: 32 zero bits, then the counter little-endian (the counter's bytes in a message). */
static uint64_t counter_of(const unsigned char *message) {
    uint64_t counter = 0;
    for (int i = 7; i >= 0; i--) counter = counter << 8 | message[8 + i];
    return counter;
}

static void nonce_of(unsigned char nonce[12], const unsigned char counter_le[8]) {
    memset(nonce, 0, 4);
    memcpy(nonce + 4, counter_le, 8);
}

/* transport.pad's length: up to a multiple of 16, but never beyond the MTU. */
static Py_ssize_t padded_length(Py_ssize_t length, Py_ssize_t mtu) {
    Py_ssize_t padding = (PADDING_MULTIPLE - length % PADDING_MULTIPLE) % PADDING_MULTIPLE;
    if (padding && length + padding > mtu) padding = mtu > length ? mtu - length : 0;
    return length + padding;
}

/* -- ChaCha20-Poly1305, composed ------------------------------------------------------------
 *
 * RFC 8439 section 2.8 with empty additional data, over OpenSSL's ChaCha20 and Poly1305 rather
 * than its ChaCha20-Poly1305 cipher, whose provider spends about half of what a 1420-byte
 * message costs in its per-message init and final (OpenSSL 3.0.19, AVX-512): ChaCha20 given a
 * new nonce and Poly1305 given a new key are cheap to start. The one-time Poly1305 key is the
 * first 32 bytes of ChaCha20's block 0 under the nonce, the data is XORed from block 1 on, and
 * the tag is Poly1305(ciphertext, zeros to a multiple of 16, le64 of the additional data's
 * length (0), le64 of the ciphertext's). A 1420-byte message at a 1420 MTU is sealed in 706 ns
 * (1126 through the AEAD), opened in 788 (1002), and a forgery refused in 372 (989), as only
 * its tag is computed (C microbenchmark, min of 60 interleaved rounds of 2000; with AVX-512
 * masked off, OPENSSL_ia32cap=:~0x10000: sealed in 787 against 879, opened in 834 against
 * 885). A TSO super-packet through both data paths, 46 segments, takes 146 us against 178
 * (benchmarks/core.py, medians of 8 interleaved runs, load average 2 on 2 CPUs). */

#define BLOCK_SIZE 64  /* ChaCha20's: block 0 makes the Poly1305 key, the data starts at 1 */
#define POLY1305_KEY_SIZE 32

/* The ciphers, fetched from the provider once (PyInit__accel): EVP_chacha20() and a MAC named in
 * each call would be looked up by name, under a lock, every time. */
static EVP_CIPHER *chacha20;
static EVP_MAC *poly1305;

/* One batch's contexts: ChaCha20 under the batch's key, Poly1305 keyed for each message. Made
 * per call with the GIL released, so threads share nothing mutable. */
typedef struct {
    EVP_CIPHER_CTX *cipher;
    EVP_MAC_CTX *mac;
} Aead;

/* 1 when both contexts are made (`key` may be NULL, to be set by aead_rekey); aead_free them
 * either way. */
static int aead_new(Aead *aead, const unsigned char *key) {
    aead->cipher = EVP_CIPHER_CTX_new();
    aead->mac = EVP_MAC_CTX_new(poly1305);
    return aead->cipher != NULL && aead->mac != NULL &&
           EVP_CipherInit_ex(aead->cipher, chacha20, NULL, key, NULL, 1) == 1;
}

static void aead_free(Aead *aead) {
    EVP_CIPHER_CTX_free(aead->cipher);
    EVP_MAC_CTX_free(aead->mac);
}

static int aead_rekey(Aead *aead, const unsigned char *key) {
    return EVP_CipherInit_ex(aead->cipher, NULL, NULL, key, NULL, -1) == 1;
}

/* ChaCha20 at block 0 of the message's nonce: OpenSSL's 16-byte IV is the 32-bit block counter
 * and the 96-bit nonce, all little-endian. */
static int aead_start(Aead *aead, const unsigned char *message) {
    unsigned char iv[16] = {0};
    nonce_of(iv + 4, message + 8);
    return EVP_CipherInit_ex(aead->cipher, NULL, NULL, NULL, iv, -1) == 1;
}

/* Room after the ciphertext for the rest of what Poly1305 reads: zeros to a multiple of 16 and
 * the two lengths. */
#define TAIL_ROOM (2 * PADDING_MULTIPLE)

/* The tag of the `length` bytes of ciphertext at `text` under the one-time `key`. The rest of
 * Poly1305's input is written into the TAIL_ROOM bytes after them, so that it all goes in as
 * one update: a second, however short, costs ~170 ns, as OpenSSL's vector Poly1305 sets up
 * again for it (a 1420-byte message sealed in 706 ns against 879). */
static int aead_tag(Aead *aead, const unsigned char *key, unsigned char *text, Py_ssize_t length,
                    unsigned char tag[TAG_SIZE]) {
    size_t padding = (PADDING_MULTIPLE - length % PADDING_MULTIPLE) % PADDING_MULTIPLE, written;
    memset(text + length, 0, padding + 8);  /* and the additional data's length, 0 */
    put_le64(text + length + padding + 8, (uint64_t)length);
    return EVP_MAC_init(aead->mac, key, POLY1305_KEY_SIZE, NULL) == 1 &&
           EVP_MAC_update(aead->mac, text, (size_t)length + padding + 16) == 1 &&
           EVP_MAC_final(aead->mac, tag, &written, TAG_SIZE) == 1;
}

/* Seals the `length` bytes of `packet`, zero-padded to `padded`, into the message at `out`
 * (its header written), through `scratch` (64 + `padded` + TAIL_ROOM bytes): block 0 and the
 * data go through ChaCha20 in one update there, in place, as a 64-byte update of its own costs
 * ~60 ns more than the copies in and out (one block alone runs at its rounds' latency). */
static int seal_one(Aead *aead, unsigned char *scratch, unsigned char *out,
                    const unsigned char *packet, Py_ssize_t length, Py_ssize_t padded) {
    unsigned char *body = out + HEADER_SIZE, *text = scratch + BLOCK_SIZE;
    int written, sealed;
    memset(scratch, 0, BLOCK_SIZE);
    memcpy(text, packet, length);
    memset(text + length, 0, padded - length);
    sealed = aead_start(aead, out) &&
             EVP_CipherUpdate(aead->cipher, scratch, &written, scratch,
                              (int)(BLOCK_SIZE + padded)) == 1 &&
             aead_tag(aead, scratch, text, padded, body + padded);
    OPENSSL_cleanse(scratch, BLOCK_SIZE);
    memcpy(body, text, padded);
    return sealed;
}

/* 1 when the tag holds (the plaintext is then in `out`), 0 when not, through `scratch` (the
 * ciphertext's length + TAIL_ROOM bytes). The tag is checked before anything is decrypted, so
 * that a forgery costs one Poly1305 pass and ChaCha20's block 0; what is decrypted is the copy
 * that was authenticated, whatever another thread does to the datagram's buffer meanwhile. */
static int open_one(Aead *aead, unsigned char *scratch, unsigned char *out,
                    const unsigned char *message, Py_ssize_t length) {
    static const unsigned char zeros[BLOCK_SIZE];
    unsigned char block[BLOCK_SIZE], tag[TAG_SIZE];
    Py_ssize_t sealed = length - HEADER_SIZE - TAG_SIZE;
    int written, authentic;
    memcpy(scratch, message + HEADER_SIZE, sealed);
    authentic = aead_start(aead, message) &&
                EVP_CipherUpdate(aead->cipher, block, &written, zeros, BLOCK_SIZE) == 1 &&
                aead_tag(aead, block, scratch, sealed, tag);
    OPENSSL_cleanse(block, BLOCK_SIZE);
    if (!authentic || CRYPTO_memcmp(tag, message + length - TAG_SIZE, TAG_SIZE) != 0) return 0;
    return !sealed || EVP_CipherUpdate(aead->cipher, out, &written, scratch, (int)sealed) == 1;
}

/* Views of a sequence's items, held while the GIL is released. */
typedef struct {
    Py_ssize_t count;
    Py_buffer *views;
} Views;

static void release_views(Views *views) {
    for (Py_ssize_t i = 0; i < views->count; i++) PyBuffer_Release(&views->views[i]);
    PyMem_Free(views->views);
}

static int take_views(PyObject *fast, Views *views) {
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    views->count = 0;
    views->views = PyMem_Calloc(count ? count : 1, sizeof(Py_buffer));
    if (views->views == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, i), &views->views[i],
                               PyBUF_SIMPLE) < 0) {
            release_views(views);
            return -1;
        }
        views->count++;
    }
    return 0;
}

PyDoc_STRVAR(seal_doc,
"seal(key, receiver, counter, packets, mtu) -> list of bytes\n\n"
"The transport messages carrying `packets` (a sequence of buffers) to `receiver`, under\n"
"`key` (32 bytes) and the counters from `counter` on: as transport.encrypt_packets.");

static PyObject *accel_seal(PyObject *module, PyObject *args) {
    Py_buffer key;
    unsigned int receiver;
    unsigned long long counter;
    PyObject *packets, *fast, *messages = NULL;
    Py_ssize_t mtu, longest = 0;
    Views views = {0, NULL};
    unsigned char *scratch = NULL;
    int sealed = 0;
    if (!PyArg_ParseTuple(args, "y*IKOn:seal", &key, &receiver, &counter, &packets, &mtu))
        return NULL;
    if (key.len != KEY_SIZE) {
        PyErr_SetString(PyExc_ValueError, "key must be 32 bytes");
        PyBuffer_Release(&key);
        return NULL;
    }
    fast = PySequence_Fast(packets, "packets must be a sequence");
    if (fast == NULL || take_views(fast, &views) < 0) goto done;
    messages = PyList_New(views.count);
    if (messages == NULL) goto release;
    for (Py_ssize_t i = 0; i < views.count; i++) {
        Py_ssize_t padded = padded_length(views.views[i].len, mtu);
        PyObject *message = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + padded + TAG_SIZE);
        if (message == NULL || padded > INT_MAX - BLOCK_SIZE - TAIL_ROOM) {
            Py_XDECREF(message);
            Py_CLEAR(messages);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "packet too long");
            goto release;
        }
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(message);
        put_le32(out, MESSAGE_TRANSPORT);
        put_le32(out + 4, receiver);
        put_le64(out + 8, (uint64_t)(counter + (unsigned long long)i));
        PyList_SET_ITEM(messages, i, message);
        if (padded > longest) longest = padded;
    }
    scratch = PyMem_Malloc(BLOCK_SIZE + longest + TAIL_ROOM);
    if (scratch == NULL) {
        Py_CLEAR(messages);
        PyErr_NoMemory();
        goto release;
    }
    Py_BEGIN_ALLOW_THREADS
    Aead aead;
    sealed = aead_new(&aead, key.buf);
    for (Py_ssize_t i = 0; sealed && i < views.count; i++) {
        Py_ssize_t length = views.views[i].len;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(messages, i));
        sealed = seal_one(&aead, scratch, out, views.views[i].buf, length,
                          padded_length(length, mtu));
    }
    aead_free(&aead);
    Py_END_ALLOW_THREADS
    if (!sealed) {
        Py_CLEAR(messages);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to seal");
    }
release:
    PyMem_Free(scratch);
    release_views(&views);
done:
    Py_XDECREF(fast);
    PyBuffer_Release(&key);
    return messages;
}

PyDoc_STRVAR(open_doc,
"open(keys, datagrams, limit) -> list of bytes or None\n\n"
"For each transport message in `datagrams` (buffers of at least 32 bytes), opened under the\n"
"key at the same place in `keys` (32 bytes, or None to skip it), or under `keys` itself when it\n"
"is one key (bytes), for them all: its padded plaintext, or None when it has no key, a counter\n"
"of `limit` or more, or fails to authenticate. As transport.decrypt_packet.");

static PyObject *accel_open(PyObject *module, PyObject *args) {
    unsigned long long limit;
    PyObject *keys, *datagrams, *fast_keys = NULL, *fast_data = NULL, *plaintexts = NULL;
    const unsigned char **key_of = NULL;
    char *opened = NULL;
    unsigned char *scratch = NULL;
    Views views = {0, NULL};
    Py_ssize_t count, longest = 0;
    int failed = 0;
    if (!PyArg_ParseTuple(args, "OOK:open", &keys, &datagrams, &limit)) return NULL;
    /* One key for all (a run under one keypair) spares the caller a list of it. */
    int one_key = PyBytes_Check(keys);
    fast_keys = one_key ? Py_NewRef(keys) : PySequence_Fast(keys, "keys must be a sequence");
    fast_data = PySequence_Fast(datagrams, "datagrams must be a sequence");
    if (fast_keys == NULL || fast_data == NULL) goto done;
    count = PySequence_Fast_GET_SIZE(fast_data);
    if (!one_key && PySequence_Fast_GET_SIZE(fast_keys) != count) {
        PyErr_SetString(PyExc_ValueError, "one key for each datagram");
        goto done;
    }
    if (take_views(fast_data, &views) < 0) goto done;
    key_of = PyMem_Calloc(count ? count : 1, sizeof(*key_of));
    opened = PyMem_Calloc(count ? count : 1, 1);
    plaintexts = PyList_New(count);
    if (key_of == NULL || opened == NULL || plaintexts == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        Py_CLEAR(plaintexts);
        goto release;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = one_key ? keys : PySequence_Fast_GET_ITEM(fast_keys, i);
        Py_ssize_t length = views.views[i].len, sealed = length - HEADER_SIZE - TAG_SIZE;
        if (key != Py_None && (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) != KEY_SIZE)) {
            PyErr_SetString(PyExc_ValueError, "a key must be 32 bytes or None");
            Py_CLEAR(plaintexts);
            goto release;
        }
        PyObject *plaintext = Py_None;
        if (key != Py_None && length >= HEADER_SIZE + TAG_SIZE && length <= INT_MAX &&
            counter_of(views.views[i].buf) < limit) {
            key_of[i] = (const unsigned char *)PyBytes_AS_STRING(key);
            if (sealed > longest) longest = sealed;
            plaintext = PyBytes_FromStringAndSize(NULL, sealed);
            if (plaintext == NULL) {
                Py_CLEAR(plaintexts);
                goto release;
            }
        } else {
            Py_INCREF(plaintext);
        }
        PyList_SET_ITEM(plaintexts, i, plaintext);
    }
    scratch = PyMem_Malloc(longest + TAIL_ROOM);
    if (scratch == NULL) {
        Py_CLEAR(plaintexts);
        PyErr_NoMemory();
        goto release;
    }
    Py_BEGIN_ALLOW_THREADS
    Aead aead;
    const unsigned char *current = NULL;  /* the key `aead` holds */
    failed = !aead_new(&aead, NULL);
    for (Py_ssize_t i = 0; !failed && i < count; i++) {
        if (key_of[i] == NULL) continue;
        if (current != key_of[i] && (current == NULL || memcmp(current, key_of[i], KEY_SIZE))) {
            if (!aead_rekey(&aead, key_of[i])) {
                failed = 1;
                break;
            }
            current = key_of[i];
        }
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(plaintexts, i));
        opened[i] = (char)open_one(&aead, scratch, out, views.views[i].buf, views.views[i].len);
    }
    aead_free(&aead);
    Py_END_ALLOW_THREADS
    if (failed) {
        Py_CLEAR(plaintexts);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to open");
        goto release;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (key_of[i] != NULL && !opened[i]) {
            Py_INCREF(Py_None);
            PyList_SetItem(plaintexts, i, Py_None);  /* drops the bytes a forgery left unfilled */
        }
    }
release:
    release_views(&views);
done:
    PyMem_Free(key_of);
    PyMem_Free(opened);
    PyMem_Free(scratch);
    Py_XDECREF(fast_keys);
    Py_XDECREF(fast_data);
    return plaintexts;
}

/* -- headers of a batch -------------------------------------------------------------------- */

static uint32_t get_le32(const unsigned char *in) {
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}

PyDoc_STRVAR(transport_run_doc,
"transport_run(datagrams) -> (count, receiver, counter)\n\n"
"How many of `datagrams` (buffers), from the first on, are transport messages (type 4 and at\n"
"least 32 bytes) to one receiver index under consecutive counters, the first's receiver and\n"
"counter (0 and 0 when none is): as transport.transport_run.");

static PyObject *accel_transport_run(PyObject *module, PyObject *datagrams) {
    PyObject *fast = PySequence_Fast(datagrams, "datagrams must be a sequence");
    if (fast == NULL) return NULL;
    Py_ssize_t count = 0, total = PySequence_Fast_GET_SIZE(fast);
    uint32_t receiver = 0;
    uint64_t counter = 0;
    for (; count < total; count++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, count), &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(fast);
            return NULL;
        }
        const unsigned char *data = view.buf;
        int follows = view.len >= HEADER_SIZE + TAG_SIZE && get_le32(data) == MESSAGE_TRANSPORT;
        if (follows && count == 0) {
            receiver = get_le32(data + 4);
            counter = counter_of(data);
        } else if (follows) {
            uint64_t expected = counter + (uint64_t)count;  /* not past 2**64: Python's sum */
            follows = expected > counter && get_le32(data + 4) == receiver &&
                      counter_of(data) == expected;
        }
        PyBuffer_Release(&view);
        if (!follows) break;
    }
    Py_DECREF(fast);
    return Py_BuildValue("(nkK)", count, (unsigned long)receiver, (unsigned long long)counter);
}

/* An IP packet's length by its header and where its source address is (4 or 16 bytes long),
 * or a length of 0 when the header is cut short or claims more than `length` bytes: as
 * ippacket.inner_length_and_source. */
static Py_ssize_t inner_length(const unsigned char *packet, Py_ssize_t length, Py_ssize_t *source,
                               Py_ssize_t *source_len) {
    Py_ssize_t inner = 0;
    if (length >= 20 && packet[0] >> 4 == 4) {
        inner = packet[2] << 8 | packet[3];
        if (inner < 20) inner = 0;
        *source = 12, *source_len = 4;
    } else if (length >= 40 && packet[0] >> 4 == 6) {
        inner = 40 + (packet[4] << 8 | packet[5]);
        *source = 8, *source_len = 16;
    }
    return inner <= length ? inner : 0;
}

PyDoc_STRVAR(inner_packets_doc,
"inner_packets(plaintexts) -> (packets, sources) or None\n\n"
"Each of `plaintexts` (bytes, or None) cut to its IP header's length, and their source\n"
"addresses, one for each run of packets from one source; None when one is None or empty, or\n"
"its header is cut short or claims more bytes than it has: as ippacket.inner_packets.");

static PyObject *accel_inner_packets(PyObject *module, PyObject *plaintexts) {
    PyObject *fast = PySequence_Fast(plaintexts, "plaintexts must be a sequence");
    if (fast == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    PyObject *packets = PyList_New(count), *sources = PyList_New(0), *result = NULL;
    const unsigned char *last = NULL;  /* the source of the packet before */
    Py_ssize_t last_len = 0;
    if (packets == NULL || sources == NULL) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *plaintext = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(plaintext)) {
            result = Py_None;
            goto done;
        }
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(plaintext);
        Py_ssize_t length = PyBytes_GET_SIZE(plaintext), source = 0, source_len = 0;
        Py_ssize_t inner = inner_length(data, length, &source, &source_len);
        if (inner == 0) {
            result = Py_None;
            goto done;
        }
        PyObject *packet = plaintext;  /* itself when it has no padding, as plaintext[:length] */
        if (inner < length) {
            packet = PyBytes_FromStringAndSize((const char *)data, inner);
            if (packet == NULL) goto done;
        } else {
            Py_INCREF(packet);
        }
        PyList_SET_ITEM(packets, i, packet);
        if (last != NULL && last_len == source_len && !memcmp(last, data + source, source_len))
            continue;  /* the run's source, listed already */
        last = data + source, last_len = source_len;
        PyObject *address = PyBytes_FromStringAndSize((const char *)last, source_len);
        if (address == NULL || PyList_Append(sources, address) < 0) {
            Py_XDECREF(address);
            goto done;
        }
        Py_DECREF(address);
    }
    result = PyTuple_Pack(2, packets, sources);
done:
    Py_XINCREF(result == Py_None ? result : NULL);
    Py_XDECREF(packets);
    Py_XDECREF(sources);
    Py_DECREF(fast);
    return result;
}

PyDoc_STRVAR(common_destination_doc,
"common_destination(packets) -> bytes or None\n\n"
"The destination address all of `packets` (buffers) have, or None when one has none or they\n"
"differ: as ippacket.common_destination.");

static PyObject *accel_common_destination(PyObject *module, PyObject *packets) {
    PyObject *fast = PySequence_Fast(packets, "packets must be a sequence");
    if (fast == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast), length = 0;
    unsigned char first[16];
    int same = count > 0;
    for (Py_ssize_t i = 0; same && i < count; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, i), &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(fast);
            return NULL;
        }
        const unsigned char *data = view.buf;
        Py_ssize_t at = 0, size = 0;
        if (view.len >= 20 && data[0] >> 4 == 4) {
            at = 16, size = 4;
        } else if (view.len >= 40 && data[0] >> 4 == 6) {
            at = 24, size = 16;
        }
        if (i == 0 && size) {
            memcpy(first, data + at, size);
            length = size;
        }
        same = size && size == length && memcmp(first, data + at, size) == 0;
        PyBuffer_Release(&view);
    }
    Py_DECREF(fast);
    if (!same) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)first, length);
}

/* -- segmentation ------------------------------------------------------------------------ */

#define TCP_FIN 0x01
#define TCP_PSH 0x08

static void put_be16(unsigned char *out, unsigned value) {
    out[0] = (unsigned char)(value >> 8);
    out[1] = (unsigned char)value;
}

static void put_be32(unsigned char *out, uint32_t value) {
    put_be16(out, value >> 16);
    put_be16(out + 2, value & 0xFFFF);
}

static uint32_t get_be32(const unsigned char *in) {
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

/* A number congruent, modulo 0xffff, to the sum of data's big-endian 16-bit words (an odd last
 * byte padded with zero), and 0 only if that sum is: what the one's complement sum needs. It
 * adds four bytes a step as a 32-bit word in the host's order, which is the same sum with its
 * bytes swapped on a little-endian host (RFC 1071, section 2(B)), in a loop the compiler
 * vectorises (-O3). With `out`, the bytes are copied there as they are summed: one pass. */
static inline uint64_t sum_words(unsigned char *out, const unsigned char *data,
                                 Py_ssize_t length) {
    uint64_t total = 0;
    uint32_t word;
    Py_ssize_t i = 0;
    if (out != NULL) {
        for (; i + 4 <= length; i += 4) {
            memcpy(&word, data + i, 4);
            memcpy(out + i, &word, 4);
            total += word;
        }
        memcpy(out + i, data + i, length - i);
    } else {
        for (; i + 4 <= length; i += 4) {
            memcpy(&word, data + i, 4);
            total += word;
        }
    }
    for (; i + 1 < length; i += 2) {
        uint16_t half;
        memcpy(&half, data + i, 2);
        total += half;
    }
#if PY_BIG_ENDIAN
    if (i < length) total += (uint32_t)data[i] << 8;
    return total;
#else
    if (i < length) total += data[i];
    while (total >> 16) total = (total & 0xFFFF) + (total >> 16);
    return (total >> 8 | total << 8) & 0xFFFF;
#endif
}

static uint64_t word_sum(const unsigned char *data, Py_ssize_t length) {
    return sum_words(NULL, data, length);
}

/* The one's complement sum of `total`'s words: 0 only if `total` is. */
static unsigned fold(uint64_t total) {
    while (total >> 16) total = (total & 0xFFFF) + (total >> 16);
    return (unsigned)total;
}

typedef struct {
    Py_ssize_t l4_start, header_len, size;
    int tcp, ipv4;
} Cut;

/* One segment: the super-packet's headers with this segment's lengths, IPv4 ID and header
 * checksum, TCP sequence number and flags, or UDP length, and its transport checksum; as
 * segment._split (and the kernel's and wireguard-go's segmentation) does. */
static void cut_one(const Cut *cut, const unsigned char *packet, Py_ssize_t index, int last,
                    unsigned char *out, Py_ssize_t length) {
    Py_ssize_t l4 = cut->l4_start, l4_length = length - l4;
    Py_ssize_t checksum_at = l4 + (cut->tcp ? 16 : 6);
    memcpy(out, packet, cut->header_len);
    /* The transport header is a whole number of 16-bit words: the payload sums on its own. */
    uint64_t payload_sum = sum_words(out + cut->header_len,
                                     packet + cut->header_len + index * cut->size,
                                     length - cut->header_len);
    if (cut->ipv4) {
        put_be16(out + 2, (unsigned)length);
        put_be16(out + 4, (unsigned)((out[4] << 8 | out[5]) + index) & 0xFFFF);
        put_be16(out + 10, 0);
        put_be16(out + 10, ~fold(word_sum(out, l4)) & 0xFFFF);
    } else {
        put_be16(out + 4, (unsigned)(length - 40));
    }
    if (cut->tcp) {
        put_be32(out + l4 + 4, get_be32(out + l4 + 4) + (uint32_t)(index * cut->size));
        if (!last) out[l4 + 13] &= (unsigned char)~(TCP_FIN | TCP_PSH);
    } else {
        put_be16(out + l4 + 4, (unsigned)l4_length);
    }
    put_be16(out + checksum_at, 0);
    uint64_t pseudo = cut->ipv4 ? word_sum(out + 12, 8) : word_sum(out + 8, 32);
    pseudo += (cut->tcp ? 6 : 17) + (uint64_t)l4_length;
    uint64_t header_sum = word_sum(out + l4, cut->header_len - l4);
    unsigned field = ~fold(pseudo + header_sum + payload_sum) & 0xFFFF;
    put_be16(out + checksum_at, field ? field : 0xFFFF);  /* zero would mean "none" for UDP */
}

PyDoc_STRVAR(split_doc,
"split(packet, l4_start, header_len, size, tcp, ipv4) -> list of bytes\n\n"
"The segments of a TSO or USO super-packet whose headers segment._template has checked: as\n"
"segment._split.");

static PyObject *accel_split(PyObject *module, PyObject *args) {
    Py_buffer packet;
    Cut cut;
    PyObject *segments = NULL;
    if (!PyArg_ParseTuple(args, "y*nnnpp:split", &packet, &cut.l4_start, &cut.header_len,
                          &cut.size, &cut.tcp, &cut.ipv4))
        return NULL;
    Py_ssize_t minimum = cut.l4_start + (cut.tcp ? 20 : 8);
    if (cut.size <= 0 || cut.l4_start < (cut.ipv4 ? 20 : 40) || cut.header_len < minimum ||
        cut.header_len > packet.len) {
        PyErr_SetString(PyExc_ValueError, "headers that do not fit the super-packet");
        goto done;
    }
    Py_ssize_t payload = packet.len - cut.header_len;
    Py_ssize_t count = payload ? (payload + cut.size - 1) / cut.size : 0;
    segments = PyList_New(count);
    if (segments == NULL) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t chunk = i + 1 < count ? cut.size : payload - i * cut.size;
        PyObject *segment = PyBytes_FromStringAndSize(NULL, cut.header_len + chunk);
        if (segment == NULL) {
            Py_CLEAR(segments);
            goto done;
        }
        PyList_SET_ITEM(segments, i, segment);
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *segment = PyList_GET_ITEM(segments, i);
        cut_one(&cut, packet.buf, i, i + 1 == count, (unsigned char *)PyBytes_AS_STRING(segment),
                PyBytes_GET_SIZE(segment));
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&packet);
    return segments;
}

/* struct virtio_net_hdr's values (include/uapi/linux/virtio_net.h), as segment.py names them. */
#define F_NEEDS_CSUM 1
#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define GSO_UDP_L4 5

/* The virtio-net header and the IP and transport headers of a run of `count` segments of
 * `length` bytes merged, into `out`: as coalesce._Run._headers. 0 when a length does not fit. */
static int merged_headers(unsigned char *out, const unsigned char *first, Py_ssize_t first_len,
                          const unsigned char *last, Py_ssize_t length, Py_ssize_t l4,
                          Py_ssize_t header_len, int tcp) {
    unsigned char *header = out + VNET_HDR_SIZE;
    int ipv4 = l4 == 20, gso_type = ipv4 ? GSO_TCPV4 : GSO_TCPV6;
    Py_ssize_t segment_length = length - l4;
    if ((ipv4 ? length : length - 40) > 0xFFFF || segment_length > 0xFFFF ||
        first_len - header_len > 0xFFFF || header_len > 0xFFFF)
        return 0;
    memcpy(header, first, header_len);
    if (ipv4) {
        put_be16(header + 2, (unsigned)length);
        put_be16(header + 10, 0);
        put_be16(header + 10, ~fold(word_sum(header, l4)) & 0xFFFF);
    } else {
        put_be16(header + 4, (unsigned)(length - 40));
    }
    Py_ssize_t checksum_offset = tcp ? 16 : 6;
    if (tcp) {
        header[l4 + 13] |= last[l4 + 13] & TCP_PSH;
    } else {
        gso_type = GSO_UDP_L4;
        put_be16(header + l4 + 4, (unsigned)segment_length);
    }
    /* CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, the kernel adds the rest. */
    uint64_t pseudo = (first[0] >> 4 == 4 ? word_sum(first + 12, 8) : word_sum(first + 8, 32)) +
                      (tcp ? 6 : 17) + (uint64_t)segment_length;
    put_be16(header + l4 + checksum_offset, fold(pseudo));
    uint16_t fields[4] = {(uint16_t)header_len, (uint16_t)(first_len - header_len), (uint16_t)l4,
                          (uint16_t)checksum_offset};
    out[0] = F_NEEDS_CSUM;
    out[1] = (unsigned char)gso_type;
    memcpy(out + 2, fields, sizeof(fields));  /* the host's byte order, as the TUN reads it */
    return 1;
}

PyDoc_STRVAR(merge_doc,
"merge(segments, l4_start, header_len, tcp) -> bytes\n\n"
"A run of `segments` (IP packets of one flow, each with `header_len` bytes of headers, the\n"
"transport header from `l4_start` on) as one super-packet behind its virtio-net header: as\n"
"coalesce._Run.build. Their checksums are not verified (see coalesce.py).");

static PyObject *accel_merge(PyObject *module, PyObject *args) {
    PyObject *segments, *fast = NULL, *merged = NULL;
    Py_ssize_t l4, header_len, length;
    int tcp;
    Views views = {0, NULL};
    if (!PyArg_ParseTuple(args, "Onnp:merge", &segments, &l4, &header_len, &tcp)) return NULL;
    fast = PySequence_Fast(segments, "segments must be a sequence");
    if (fast == NULL || take_views(fast, &views) < 0) goto done;
    length = header_len;
    for (Py_ssize_t i = 0; i < views.count; i++) {
        if (views.views[i].len < header_len) {
            PyErr_SetString(PyExc_ValueError, "a segment shorter than its headers");
            goto release;
        }
        length += views.views[i].len - header_len;
    }
    if (views.count == 0 || l4 < 20 || header_len < l4 + (tcp ? 20 : 8)) {
        PyErr_SetString(PyExc_ValueError, "not a run of segments");
        goto release;
    }
    const unsigned char *first = views.views[0].buf, *last = views.views[views.count - 1].buf;
    if (views.views[0].len < (first[0] >> 4 == 4 ? 20 : 40)) {  /* the pseudo-header's bytes */
        PyErr_SetString(PyExc_ValueError, "a first segment shorter than its addresses");
        goto release;
    }
    merged = PyBytes_FromStringAndSize(NULL, VNET_HDR_SIZE + length);
    if (merged == NULL) goto release;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(merged);
    if (!merged_headers(out, first, views.views[0].len, last, length, l4, header_len, tcp)) {
        Py_CLEAR(merged);
        PyErr_SetString(PyExc_ValueError, "a run longer than a super-packet");
        goto release;
    }
    Py_BEGIN_ALLOW_THREADS
    out += VNET_HDR_SIZE + header_len;
    for (Py_ssize_t i = 0; i < views.count; i++) {
        Py_ssize_t size = views.views[i].len - header_len;
        memcpy(out, (const unsigned char *)views.views[i].buf + header_len, size);
        out += size;
    }
    Py_END_ALLOW_THREADS
release:
    release_views(&views);
done:
    Py_XDECREF(fast);
    return merged;
}

/* -- coalescing ---------------------------------------------------------------------------- */

#define TCP_ACK 0x10

static unsigned get_be16(const unsigned char *in) { return (unsigned)in[0] << 8 | in[1]; }

/* Whether the header bytes every segment of a run shares with its first agree: all but the
 * lengths, the IPv4 ID, the checksums, the TCP sequence number and flags, as
 * coalesce._fixed_mask spans them. */
static int fixed_bytes_agree(const unsigned char *a, const unsigned char *b, Py_ssize_t l4,
                             Py_ssize_t header_len, int tcp) {
    if (l4 == 20) {
        if (memcmp(a, b, 2) || memcmp(a + 6, b + 6, 4) || memcmp(a + 12, b + 12, l4 + 4 - 12))
            return 0;
    } else if (memcmp(a, b, 4) || memcmp(a + 6, b + 6, l4 + 4 - 6)) {
        return 0;
    }
    return !tcp || (!memcmp(a + l4 + 8, b + l4 + 8, 5) && !memcmp(a + l4 + 14, b + l4 + 14, 2) &&
                    !memcmp(a + l4 + 18, b + l4 + 18, header_len - l4 - 18));
}

PyDoc_STRVAR(follow_on_doc,
"follow_on(packets, start, first, l4_start, header_len, tcp, length, next_sequence) -> count\n\n"
"How many of `packets` (bytes) from `start` on may be appended, in turn, to a run of segments\n"
"that begins with `first`, is `length` bytes long and expects `next_sequence` (TCP): as\n"
"coalesce._Run.follows and append, the run not yet ended.");

static PyObject *accel_follow_on(PyObject *module, PyObject *args) {
    PyObject *packets, *fast;
    Py_buffer first;
    Py_ssize_t start, l4, header_len, length, count = 0;
    unsigned long long next_sequence;
    int tcp;
    if (!PyArg_ParseTuple(args, "Ony*nnpnK:follow_on", &packets, &start, &first, &l4, &header_len,
                          &tcp, &length, &next_sequence))
        return NULL;
    fast = PySequence_Fast(packets, "packets must be a sequence");
    Py_ssize_t gso_size = first.len - header_len;
    if (fast == NULL || start < 0 || l4 < 20 || header_len < l4 + (tcp ? 20 : 8) ||
        gso_size <= 0) {
        if (fast != NULL) PyErr_SetString(PyExc_ValueError, "not a run's first segment");
        goto done;
    }
    const unsigned char *head = first.buf;
    uint32_t sequence = (uint32_t)next_sequence;
    for (Py_ssize_t i = start; i < PySequence_Fast_GET_SIZE(fast); i++, count++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(item)) break;
        const unsigned char *packet = (const unsigned char *)PyBytes_AS_STRING(item);
        Py_ssize_t total = PyBytes_GET_SIZE(item), size = total - header_len;
        if (!(0 < size && size <= gso_size) || length + size > 0xFFFF) break;
        unsigned flags = tcp ? packet[l4 + 13] : 0;
        if (tcp) {
            if ((flags | TCP_PSH) != (TCP_ACK | TCP_PSH) || get_be32(packet + l4 + 4) != sequence)
                break;
        } else if ((Py_ssize_t)get_be16(packet + l4 + 4) != total - l4) {
            break;
        }
        if (!fixed_bytes_agree(head, packet, l4, header_len, tcp)) break;
        Py_ssize_t stated = packet[0] >> 4 == 4 ? get_be16(packet + 2) : 40 + get_be16(packet + 4);
        if (stated != total) break;
        length += size;
        sequence += (uint32_t)size;
        if (size < gso_size || (tcp && flags & TCP_PSH)) {  /* it ends the run */
            count++;
            break;
        }
    }
done:
    Py_XDECREF(fast);
    PyBuffer_Release(&first);
    return PyErr_Occurred() ? NULL : PyLong_FromSsize_t(count);
}

/* -- lone messages, over libsodium ------------------------------------------------------- */

/* A ping's packet comes alone, 20 ms after the last, to caches that have forgotten the data
 * path: OpenSSL's EVP sets up contexts and goes through its provider's layers for each call,
 * which a batch shares but a lone packet pays in full. libsodium's one-shot functions take the
 * key and nonce as arguments and touch little more than the bytes. One 84-byte packet, caches
 * emptied before each call (a 32 MiB copy): 17 us to seal through `seal` (19 through the AEAD
 * it used before), 8 through seal_lone; to open, 16 against 8; warm, 0.75 (1.2) against
 * 0.48 us; the same from 32 to 128 bytes (2026-12, load average 2 on 2 CPUs). Built only where
 * libsodium's headers were found (setup.py defines WGPY_SODIUM); the GIL is kept, as one
 * packet's work is shorter than a handover to another thread. */
#ifdef WGPY_SODIUM
#include <sodium.h>

static const unsigned char *key_argument(PyObject *key) {
    if (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) != KEY_SIZE) {
        PyErr_SetString(PyExc_ValueError, "key must be 32 bytes");
        return NULL;
    }
    return (const unsigned char *)PyBytes_AS_STRING(key);
}

PyDoc_STRVAR(seal_lone_doc,
"seal_lone(key, receiver, counter, packet, mtu) -> bytes\n\n"
"The transport message carrying `packet` (a buffer) to `receiver` under `key` (32 bytes)\n"
"and `counter`, sealed by libsodium: as transport.encrypt_packet.");

static PyObject *accel_seal_lone(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "seal_lone takes 5 arguments");
        return NULL;
    }
    const unsigned char *key = key_argument(args[0]);
    if (key == NULL) return NULL;
    unsigned long receiver = PyLong_AsUnsignedLong(args[1]);
    if (receiver == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    unsigned long long counter = PyLong_AsUnsignedLongLong(args[2]);
    if (counter == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    Py_ssize_t mtu = PyLong_AsSsize_t(args[4]);
    if (mtu == -1 && PyErr_Occurred()) return NULL;
    if (receiver > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "receiver index beyond 32 bits");
        return NULL;
    }
    Py_buffer packet;
    if (PyObject_GetBuffer(args[3], &packet, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t padded = padded_length(packet.len, mtu);
    PyObject *message = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + padded + TAG_SIZE);
    if (message != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(message);
        unsigned char *body = out + HEADER_SIZE, nonce[12];
        put_le32(out, MESSAGE_TRANSPORT);
        put_le32(out + 4, (uint32_t)receiver);
        put_le64(out + 8, (uint64_t)counter);
        memcpy(body, packet.buf, packet.len);
        memset(body + packet.len, 0, padded - packet.len);
        nonce_of(nonce, out + 8);
        /* In place: libsodium allows the ciphertext over the plaintext. */
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(
            body, body + padded, NULL, body, (unsigned long long)padded, NULL, 0, NULL, nonce, key);
    }
    PyBuffer_Release(&packet);
    return message;
}

PyDoc_STRVAR(open_lone_doc,
"open_lone(key, message, limit) -> bytes or None\n\n"
"The padded plaintext of the transport message `message` (a buffer) under `key` (32 bytes),\n"
"opened by libsodium; None when it is shorter than a header and tag, its counter is `limit`\n"
"or more, or it fails to authenticate. As transport.decrypt_packet.");

static PyObject *accel_open_lone(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "open_lone takes 3 arguments");
        return NULL;
    }
    const unsigned char *key = key_argument(args[0]);
    if (key == NULL) return NULL;
    unsigned long long limit = PyLong_AsUnsignedLongLong(args[2]);
    if (limit == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *message = view.buf;
    Py_ssize_t length = view.len;
    PyObject *plaintext = NULL;
    if (length < HEADER_SIZE + TAG_SIZE || counter_of(message) >= limit) goto none;
    Py_ssize_t sealed = length - HEADER_SIZE - TAG_SIZE;
    plaintext = PyBytes_FromStringAndSize(NULL, sealed);
    if (plaintext == NULL) goto done;
    unsigned char nonce[12];
    nonce_of(nonce, message + 8);
    /* libsodium checks the tag before it decrypts anything. */
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(
            (unsigned char *)PyBytes_AS_STRING(plaintext), NULL, message + HEADER_SIZE,
            (unsigned long long)sealed, message + length - TAG_SIZE, NULL, 0, nonce, key) == 0)
        goto done;
    Py_CLEAR(plaintext);
none:
    plaintext = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return plaintext;
}

static PyMethodDef sodium_methods[] = {
    {"seal_lone", (PyCFunction)(void (*)(void))accel_seal_lone, METH_FASTCALL, seal_lone_doc},
    {"open_lone", (PyCFunction)(void (*)(void))accel_open_lone, METH_FASTCALL, open_lone_doc},
    {NULL, NULL, 0, NULL},
};

/* seal_lone and open_lone, and `sodium` (libsodium's version, None without them): a libsodium
 * that fails to start leaves the rest of the module working. */
static int add_sodium(PyObject *module) {
    if (sodium_init() < 0) return PyModule_AddObjectRef(module, "sodium", Py_None);
    if (PyModule_AddFunctions(module, sodium_methods) < 0) return -1;
    return PyModule_AddStringConstant(module, "sodium", sodium_version_string());
}
#else
static int add_sodium(PyObject *module) {
    return PyModule_AddObjectRef(module, "sodium", Py_None);
}
#endif

static PyMethodDef accel_methods[] = {
    {"seal", accel_seal, METH_VARARGS, seal_doc},
    {"open", accel_open, METH_VARARGS, open_doc},
    {"transport_run", accel_transport_run, METH_O, transport_run_doc},
    {"inner_packets", accel_inner_packets, METH_O, inner_packets_doc},
    {"common_destination", accel_common_destination, METH_O, common_destination_doc},
    {"split", accel_split, METH_VARARGS, split_doc},
    {"follow_on", accel_follow_on, METH_VARARGS, follow_on_doc},
    {"merge", accel_merge, METH_VARARGS, merge_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT, "_accel",
    "Transport messages sealed and opened a batch per call (see wgpy/io/accel.py).", -1,
    accel_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__accel(void) {
    chacha20 = EVP_CIPHER_fetch(NULL, "ChaCha20", NULL);
    poly1305 = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    if (chacha20 == NULL || poly1305 == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no ChaCha20 or no Poly1305");
        return NULL;
    }
    PyObject *module = PyModule_Create(&accel_module);
    if (module == NULL) return NULL;
    if (PyModule_AddStringConstant(module, "openssl", OpenSSL_version(OPENSSL_VERSION)) < 0 ||
        add_sodium(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
