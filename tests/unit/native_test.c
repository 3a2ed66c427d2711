/* The native protocol codec: requests as the client encodes them decode to what was meant, and
 * malformed ones are refused. */
#include "net/native.h"
#include "sl_test.h"

static void frame_begin(sl_buf *b, uint32_t id, uint16_t api, msgpack_packer *pk) {
    b->len = 0;
    sl_buf_reserve(b, 6);
    sl_be32_put(b->data, id);
    sl_be16_put(b->data + 4, api);
    b->len = 6;
    sl_mp_packer_init(pk, b);
}

static void make_produce(sl_buf *b) {
    msgpack_packer pk;
    frame_begin(b, 7, SL_API_PRODUCE, &pk);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, -1);
    msgpack_pack_int(&pk, 30000);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 2);
    sl_mp_pack_str(&pk, "orders");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 3);
    msgpack_pack_bin(&pk, 4);
    msgpack_pack_bin_body(&pk, "abcd", 4);
}

static void make_fetch(sl_buf *b) {
    msgpack_packer pk;
    frame_begin(b, 8, SL_API_FETCH, &pk);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 500);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 1 << 20);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 2);
    sl_mp_pack_str(&pk, "orders");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int64(&pk, 42);
    msgpack_pack_int(&pk, 4096);
}

static void make_create(sl_buf *b) {
    msgpack_packer pk;
    frame_begin(b, 9, SL_API_CREATE_TOPIC, &pk);
    msgpack_pack_array(&pk, 3);
    sl_mp_pack_str(&pk, "t1");
    msgpack_pack_int(&pk, 6);
    msgpack_pack_map(&pk, 1);
    sl_mp_pack_str(&pk, "retention.ms");
    sl_mp_pack_str(&pk, "1000");
}

static void produce_decodes(void) {
    sl_buf b = SL_BUF_INIT;
    sl_native_req req;
    make_produce(&b);
    SL_PASS(sl_native_decode_request(b.data, b.len, &req));
    SL_EQ(req.id, 7);
    SL_EQ(req.api, SL_API_PRODUCE);
    SL_EQ(req.acks, -1);
    SL_EQ(req.ntopics, 1);
    SL_STREQ(req.topics[0].name, "orders");
    SL_EQ(req.topics[0].parts[0].partition, 3);
    SL_EQ(req.topics[0].parts[0].len, 4);
    /* Zero copy: the batch bytes are the frame's own. */
    SL_TRUE(req.topics[0].parts[0].data > b.data && req.topics[0].parts[0].data < b.data + b.len);
    sl_native_req_free(&req);
    sl_buf_free(&b);
}

static void fetch_and_admin_decode(void) {
    sl_buf b = SL_BUF_INIT;
    sl_native_req req;
    make_fetch(&b);
    SL_PASS(sl_native_decode_request(b.data, b.len, &req));
    SL_EQ(req.max_wait_ms, 500);
    SL_EQ(req.topics[0].parts[0].offset, 42);
    SL_EQ(req.topics[0].parts[0].max_bytes, 4096);
    sl_native_req_free(&req);
    make_create(&b);
    SL_PASS(sl_native_decode_request(b.data, b.len, &req));
    SL_STREQ(req.name, "t1");
    SL_EQ(req.partitions, 6);
    SL_EQ(req.nconfigs, 1);
    SL_STREQ(req.configs[0].key, "retention.ms");
    SL_STREQ(req.configs[0].value, "1000");
    sl_native_req_free(&req);
    sl_buf_free(&b);
}

static void malformed_requests_are_refused(void) {
    sl_buf b = SL_BUF_INIT;
    sl_native_req req;
    make_produce(&b);
    /* Every truncation is refused, never read past. */
    for (size_t len = 0; len < b.len; len++) {
        SL_FAIL(sl_native_decode_request(b.data, len, &req), SL_EPROTO);
        sl_native_req_free(&req);
    }
    /* Trailing bytes after the body. */
    sl_buf_append(&b, "x", 1);
    SL_FAIL(sl_native_decode_request(b.data, b.len, &req), SL_EPROTO);
    sl_native_req_free(&req);
    /* Unknown api. */
    make_create(&b);
    sl_be16_put(b.data + 4, 999);
    SL_FAIL(sl_native_decode_request(b.data, b.len, &req), SL_EUNSUPPORTED);
    SL_EQ(req.id, 9);
    sl_native_req_free(&req);
    /* acks other than 0, 1, -1. */
    make_produce(&b);
    b.data[7] = 0x05; /* the positive fixint after the array header: acks = 5 */
    SL_FAIL(sl_native_decode_request(b.data, b.len, &req), SL_EPROTO);
    sl_native_req_free(&req);
    /* A topic name too long for a file name. */
    msgpack_packer pk;
    frame_begin(&b, 1, SL_API_DELETE_TOPIC, &pk);
    msgpack_pack_array(&pk, 1);
    char longname[400];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    sl_mp_pack_str(&pk, longname);
    SL_FAIL(sl_native_decode_request(b.data, b.len, &req), SL_EPROTO);
    sl_native_req_free(&req);
    sl_buf_free(&b);
}

/* Found by the fuzzer: msgpack-c allocates for a container's declared size before reading it. */
static void hostile_container_sizes_are_refused_before_allocating(void) {
    uint8_t frame[] = {0, 0, 0, 1, 0, SL_API_LIST_TOPICS, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0x03};
    sl_native_req req;
    SL_FAIL(sl_native_decode_request(frame, sizeof(frame), &req), SL_EPROTO);
    sl_native_req_free(&req);
    uint8_t map16[] = {0xde, 0xff, 0xff, 0x01, 0x02};
    SL_FAIL(sl_mp_check(map16, sizeof(map16)), SL_EPROTO);
    uint8_t str32[] = {0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'};
    SL_FAIL(sl_mp_check(str32, sizeof(str32)), SL_EPROTO);
    uint8_t ok[] = {0x92, 0x01, 0xa1, 'x'};
    SL_PASS(sl_mp_check(ok, sizeof(ok)));
    SL_FAIL(sl_mp_check(ok, sizeof(ok) - 1), SL_EPROTO);
    uint8_t unused[] = {0xc1};
    SL_FAIL(sl_mp_check(unused, 1), SL_EPROTO);
}

SL_TESTS({"produce request decodes without copying batches", produce_decodes},
         {"fetch and admin requests decode", fetch_and_admin_decode},
         {"malformed requests are refused", malformed_requests_are_refused},
         {"hostile container sizes are refused before allocating",
          hostile_container_sizes_are_refused_before_allocating})
