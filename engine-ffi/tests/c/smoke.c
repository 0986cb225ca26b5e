/*
 * smoke.c: drives the engine through the C API alone, as an embedder would, and checks every
 * misuse the API promises to survive. Run by engine-ffi/tests/c_programs.rs, which builds it
 * with the system C compiler, and talks to it over stdin/stdout:
 *
 *   smoke  -> harness   "port N\n"           the Shadowsocks inbound's real port
 *   harness             runs sslocal (shadowsocks-rust) against that port and relays an echo
 *                       transfer through it as user "alice"
 *   harness -> smoke    "moved UP DOWN\n"    payload bytes the client moved each way
 *   smoke  -> harness   "smoke: ok\n"        after checking alice's counters equal UP/DOWN,
 *                                            removing her, stopping and freeing everything
 *
 * Any failed check prints what was expected and exits 1.
 */
#include "marzneshin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char SS_PASSWORD[] = "smoke-test-password";

static void die(int line, const char *what) {
    char detail[512];
    mzn_last_error(detail, sizeof detail, NULL);
    fprintf(stderr, "smoke.c:%d: %s (last error: %s)\n", line, what, detail);
    exit(1);
}

/* Checks that `got` is `want`; on mismatch prints both codes' messages and the last error. */
static void expect(int line, const char *call, mzn_result got, mzn_result want) {
    if (got == want) {
        return;
    }
    char got_text[128], want_text[128], detail[512];
    mzn_last_error(detail, sizeof detail, NULL);
    mzn_result_message(got, got_text, sizeof got_text, NULL);
    mzn_result_message(want, want_text, sizeof want_text, NULL);
    fprintf(stderr, "smoke.c:%d: %s returned %u (%s), want %u (%s); last error: %s\n", line,
            call, (unsigned)got, got_text, (unsigned)want, want_text, detail);
    exit(1);
}
#define EXPECT(call, want) expect(__LINE__, #call, (call), (want))
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond))                                                                       \
            die(__LINE__, "check failed: " #cond);                                         \
    } while (0)

/* The last error must mention `needle` (a field path, a tag, ...). */
static void expect_last_error(int line, const char *needle) {
    char detail[512];
    size_t len = 0;
    expect(line, "mzn_last_error", mzn_last_error(detail, sizeof detail, &len), MZN_RESULT_OK);
    if (strstr(detail, needle) == NULL || len != strlen(detail)) {
        fprintf(stderr, "smoke.c:%d: last error \"%s\" does not name \"%s\"\n", line, detail,
                needle);
        exit(1);
    }
}
#define EXPECT_LAST_ERROR(needle) expect_last_error(__LINE__, needle)

static mzn_result start(const char *json, mzn_engine **out) {
    return mzn_engine_new(json, strlen(json), out);
}

static mzn_result upsert(const mzn_engine *e, const char *json) {
    return mzn_engine_upsert_users(e, json, strlen(json));
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Misuse that must come back as a result code before any engine exists. */
static void misuse_without_engine(void) {
    mzn_engine *e = (mzn_engine *)&e; /* must be overwritten with NULL on failure */
    const char *ok_config = "{\"inbounds\":[]}";

    EXPECT(mzn_engine_new(NULL, 0, &e), MZN_RESULT_NULL_PARAMETER);
    EXPECT_LAST_ERROR("config_json");
    CHECK(e == NULL);
    EXPECT(mzn_engine_new(ok_config, strlen(ok_config), NULL), MZN_RESULT_NULL_PARAMETER);
    EXPECT_LAST_ERROR("out");

    EXPECT(start("{\"inbounds\": [", &e), MZN_RESULT_INVALID_JSON);
    CHECK(e == NULL);
    EXPECT(start("\xff\xfe", &e), MZN_RESULT_INVALID_UTF8);
    EXPECT(start("{\"workers\":0,\"inbounds\":[]}", &e), MZN_RESULT_INVALID_CONFIG);
    EXPECT_LAST_ERROR("workers: must be at least 1");
    EXPECT(start("{\"inbounds\":[],\"bogus\":1}", &e), MZN_RESULT_INVALID_CONFIG);
    EXPECT_LAST_ERROR("bogus");
    EXPECT(start("{\"inbounds\":[{\"tag\":\"a\",\"listen\":\"127.0.0.1:0\",\"protocol\":"
                 "\"shadowsocks\",\"settings\":{\"method\":\"rc4\",\"users\":[]}}]}",
                 &e),
           MZN_RESULT_INVALID_CONFIG);
    EXPECT_LAST_ERROR("inbounds[0].settings.method");
    EXPECT(start("{\"inbounds\":[{\"tag\":\"a\",\"listen\":\"nowhere\"}]}", &e),
           MZN_RESULT_INVALID_CONFIG);
    EXPECT_LAST_ERROR("inbounds[0].listen");
    CHECK(e == NULL);

    /* Every handle-taking function refuses NULL. */
    size_t n = 0;
    uint16_t port = 0;
    mzn_user_counters c;
    mzn_string *s = NULL;
    EXPECT(mzn_engine_stop(NULL, 0), MZN_RESULT_NULL_PARAMETER);
    EXPECT(mzn_engine_upsert_users(NULL, "[]", 2), MZN_RESULT_NULL_PARAMETER);
    EXPECT(mzn_engine_remove_users(NULL, "[]", 2, &n), MZN_RESULT_NULL_PARAMETER);
    EXPECT(mzn_engine_apply_inbounds(NULL, "[]", 2), MZN_RESULT_NULL_PARAMETER);
    EXPECT(mzn_engine_set_routing(NULL, "null", 4), MZN_RESULT_NULL_PARAMETER);
    EXPECT(mzn_engine_local_port(NULL, "ss", &port), MZN_RESULT_NULL_PARAMETER);
    EXPECT(mzn_engine_user_counters(NULL, "alice", &c), MZN_RESULT_NULL_PARAMETER);
    EXPECT(mzn_engine_stats_json(NULL, &s), MZN_RESULT_NULL_PARAMETER);
    CHECK(s == NULL);
    EXPECT(mzn_engine_stats_json_buf(NULL, NULL, 0, &n), MZN_RESULT_NULL_PARAMETER);
    EXPECT_LAST_ERROR("engine: NULL pointer");
    mzn_engine_free(NULL);
    mzn_string_free(NULL);
    CHECK(mzn_string_ptr(NULL) == NULL);
    CHECK(mzn_string_len(NULL) == 0);

    /* Messages: every code has one; unknown numbers too; small buffers are cut, not overrun. */
    char small[8];
    size_t full = 0;
    EXPECT(mzn_result_message(MZN_RESULT_NULL_PARAMETER, small, sizeof small, &full),
           MZN_RESULT_INSUFFICIENT_SIZE);
    CHECK(full > sizeof small && strlen(small) == sizeof small - 1);
    EXPECT(mzn_result_message(MZN_RESULT_OK, NULL, 0, &full), MZN_RESULT_INSUFFICIENT_SIZE);
    CHECK(full == strlen("success"));
    EXPECT(mzn_result_message(MZN_RESULT_OK, NULL, 4, &full), MZN_RESULT_NULL_PARAMETER);
    char text[64];
    EXPECT(mzn_result_message(12345, text, sizeof text, NULL), MZN_RESULT_OK);
    CHECK(strcmp(text, "unknown result code 12345") == 0);
    CHECK(strncmp(mzn_version(), "marzneshin-engine-ffi/", 22) == 0);
}

/* Waits (up to 60 s: valgrind is slow) until alice's counters show what the client moved and
 * her connection has closed. */
static mzn_user_counters settled_counters(const mzn_engine *e, uint64_t up, uint64_t down) {
    mzn_user_counters c;
    for (int i = 0; i < 6000; i++) {
        EXPECT(mzn_engine_user_counters(e, "alice", &c), MZN_RESULT_OK);
        if (c.uplink == up && c.downlink == down && c.open_connections == 0) {
            break;
        }
        sleep_ms(10);
    }
    if (c.uplink != up || c.downlink != down || c.open_connections != 0) {
        fprintf(stderr,
                "smoke.c: alice's counters are up=%llu down=%llu open=%llu, want up=%llu "
                "down=%llu open=0\n",
                (unsigned long long)c.uplink, (unsigned long long)c.downlink,
                (unsigned long long)c.open_connections, (unsigned long long)up,
                (unsigned long long)down);
        exit(1);
    }
    return c;
}

static void check_stats_json(const mzn_engine *e, uint64_t up) {
    mzn_string *s = NULL;
    EXPECT(mzn_engine_stats_json(e, &s), MZN_RESULT_OK);
    const char *json = mzn_string_ptr(s);
    size_t len = mzn_string_len(s);
    char want[64];
    snprintf(want, sizeof want, "\"uplink\":%llu", (unsigned long long)up);
    CHECK(len == strlen(json));
    CHECK(strstr(json, "\"name\":\"alice\"") != NULL);
    CHECK(strstr(json, want) != NULL);
    CHECK(strstr(json, "\"inbounds\":[{") != NULL);

    /* The caller-buffer form: ask for the size, then read into a buffer of that size. */
    size_t need = 0;
    EXPECT(mzn_engine_stats_json_buf(e, NULL, 0, &need), MZN_RESULT_INSUFFICIENT_SIZE);
    CHECK(need == len);
    char *buf = malloc(need + 1);
    CHECK(buf != NULL);
    EXPECT(mzn_engine_stats_json_buf(e, buf, need, &need), MZN_RESULT_INSUFFICIENT_SIZE);
    CHECK(strlen(buf) == need - 1);
    EXPECT(mzn_engine_stats_json_buf(e, buf, need + 1, &need), MZN_RESULT_OK);
    CHECK(strcmp(buf, json) == 0);
    free(buf);
    mzn_string_free(s);
}

int main(void) {
    misuse_without_engine();

    const char *config =
        "{\"workers\":2,\"outbound\":{\"allow_loopback\":true},"
        "\"inbounds\":[{\"tag\":\"ss\",\"listen\":\"127.0.0.1:0\",\"network\":[\"tcp\"],"
        "\"protocol\":\"shadowsocks\","
        "\"settings\":{\"method\":\"chacha20-ietf-poly1305\",\"users\":[]}}]}";
    mzn_engine *e = NULL;
    EXPECT(start(config, &e), MZN_RESULT_OK);
    CHECK(e != NULL);

    /* Users: a bad batch changes nothing and names the field; then alice is added. */
    EXPECT(upsert(e, "[{\"name\":\"alice\",\"inbounds\":[{\"tag\":\"ss\"}]}]"),
           MZN_RESULT_INVALID_CONFIG);
    EXPECT_LAST_ERROR("users[0].inbounds[0]");
    EXPECT(upsert(e, "[{\"name\":\"alice\",\"inbounds\":[{\"tag\":\"nope\",\"password\":\"x\"}]}]"),
           MZN_RESULT_UNKNOWN_INBOUND);
    EXPECT_LAST_ERROR("nope");
    EXPECT(upsert(e, "[1,"), MZN_RESULT_INVALID_JSON);
    EXPECT(mzn_engine_upsert_users(e, NULL, 0), MZN_RESULT_NULL_PARAMETER);
    char users[256];
    snprintf(users, sizeof users,
             "[{\"name\":\"alice\",\"inbounds\":[{\"tag\":\"ss\",\"password\":\"%s\"}],"
             "\"limits\":{\"max_connections\":16}}]",
             SS_PASSWORD);
    EXPECT(upsert(e, users), MZN_RESULT_OK);

    mzn_user_counters c;
    EXPECT(mzn_engine_user_counters(e, "alice", &c), MZN_RESULT_OK);
    CHECK(c.active && c.uplink == 0 && c.downlink == 0);
    EXPECT(mzn_engine_user_counters(e, "bob", &c), MZN_RESULT_UNKNOWN_USER);
    EXPECT(mzn_engine_user_counters(e, NULL, &c), MZN_RESULT_NULL_PARAMETER);
    EXPECT(mzn_engine_user_counters(e, "alice", NULL), MZN_RESULT_NULL_PARAMETER);

    uint16_t port = 0;
    EXPECT(mzn_engine_local_port(e, "ss", &port), MZN_RESULT_OK);
    CHECK(port != 0);
    EXPECT(mzn_engine_local_port(e, "nope", &port), MZN_RESULT_UNKNOWN_INBOUND);

    /* Hand the port to the harness, which relays real traffic as alice. */
    printf("port %u\n", (unsigned)port);
    fflush(stdout);
    unsigned long long up = 0, down = 0;
    if (scanf("moved %llu %llu", &up, &down) != 2) {
        die(__LINE__, "expected \"moved UP DOWN\" on stdin");
    }
    CHECK(up > 0 && down > 0);

    c = settled_counters(e, up, down);
    CHECK(c.active && c.last_seen > 0);
    check_stats_json(e, up);

    /* Inbounds: a bad one names the field; adding a second keeps the first. */
    const char *bad = "[{\"tag\":\"ss\",\"listen\":\"127.0.0.1:0\",\"protocol\":\"shadowsocks\","
                      "\"settings\":{\"method\":\"rc4\",\"users\":[]}}]";
    EXPECT(mzn_engine_apply_inbounds(e, bad, strlen(bad)), MZN_RESULT_INVALID_CONFIG);
    EXPECT_LAST_ERROR("inbounds[0].settings.method");
    const char *inbounds =
        "[{\"tag\":\"ss\",\"listen\":\"127.0.0.1:0\",\"network\":[\"tcp\"],"
        "\"protocol\":\"shadowsocks\","
        "\"settings\":{\"method\":\"chacha20-ietf-poly1305\",\"users\":[]}},"
        "{\"tag\":\"ss2\",\"listen\":\"127.0.0.1:0\",\"network\":[\"tcp\"],"
        "\"protocol\":\"shadowsocks\","
        "\"settings\":{\"method\":\"aes-128-gcm\",\"users\":[]}}]";
    EXPECT(mzn_engine_apply_inbounds(e, inbounds, strlen(inbounds)), MZN_RESULT_OK);
    uint16_t port2 = 0;
    EXPECT(mzn_engine_local_port(e, "ss2", &port2), MZN_RESULT_OK);
    CHECK(port2 != 0 && port2 != port);

    /* Routing: a bad rule names the field and changes nothing; a rule set and none are taken. */
    const char *bad_rules = "{\"rules\":[{\"action\":\"deny\",\"ports\":[\"99999\"]}]}";
    EXPECT(mzn_engine_set_routing(e, bad_rules, strlen(bad_rules)), MZN_RESULT_INVALID_CONFIG);
    EXPECT_LAST_ERROR("routing.rules[0].ports[0]");
    const char *rules = "{\"rules\":[{\"action\":\"deny\",\"ports\":[9]}]}";
    EXPECT(mzn_engine_set_routing(e, rules, strlen(rules)), MZN_RESULT_OK);
    EXPECT(mzn_engine_set_routing(e, "null", 4), MZN_RESULT_OK);

    /* Removal: counters stay, the user is inactive. */
    size_t removed = 0;
    const char *names = "[\"alice\",\"nobody\"]";
    EXPECT(mzn_engine_remove_users(e, names, strlen(names), &removed), MZN_RESULT_OK);
    CHECK(removed == 1);
    EXPECT(mzn_engine_remove_users(e, "{}", 2, &removed), MZN_RESULT_INVALID_CONFIG);
    EXPECT(mzn_engine_user_counters(e, "alice", &c), MZN_RESULT_OK);
    CHECK(!c.active && c.uplink == up && c.downlink == down);

    /* Stop twice; control after stop is refused; counters stay readable. */
    EXPECT(mzn_engine_stop(e, 1000), MZN_RESULT_OK);
    EXPECT(mzn_engine_stop(e, 1000), MZN_RESULT_ALREADY_STOPPED);
    EXPECT(upsert(e, users), MZN_RESULT_ENGINE_STOPPED);
    EXPECT(mzn_engine_remove_users(e, names, strlen(names), NULL), MZN_RESULT_ENGINE_STOPPED);
    EXPECT(mzn_engine_apply_inbounds(e, inbounds, strlen(inbounds)), MZN_RESULT_ENGINE_STOPPED);
    EXPECT(mzn_engine_set_routing(e, "null", 4), MZN_RESULT_ENGINE_STOPPED);
    EXPECT(mzn_engine_local_port(e, "ss", &port), MZN_RESULT_ENGINE_STOPPED);
    EXPECT(mzn_engine_user_counters(e, "alice", &c), MZN_RESULT_OK);
    CHECK(c.uplink == up);
    mzn_engine_free(e);

    printf("smoke: ok\n");
    return 0;
}
