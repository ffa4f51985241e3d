/*
 * loadgen: an epoll WebSocket (RFC 6455) load generator for the rfc6455 bench.
 *
 * Built by bench/run.mjs with `cc -O2 -o bench/loadgen/loadgen bench/loadgen/loadgen.c`.
 *
 * Modes (all connect to 127.0.0.1:PORT, do a real handshake with a random
 * Sec-WebSocket-Key, check the 101 status and Sec-WebSocket-Accept):
 *
 *   echo       N connections, each keeps D messages in flight; sends masked
 *              frames of SIZE bytes (text or binary), parses the echoed
 *              (unmasked) frames, measures round trips after a warm-up.
 *   handshake  K concurrent slots: connect, upgrade, send a close frame, wait
 *              for the server's close frame and then its EOF; repeat.
 *   idle       open N connections (K handshakes at a time), print a JSON
 *              "ready" line, hold them until stdin reaches EOF or --hold
 *              seconds pass, then close them all.
 *   sink       fan-out (bench/broadcast.mjs): open N connections like idle,
 *              print "ready", then only read: count whole messages (checking
 *              opcode, and length when not compressed) until --expect of
 *              them have arrived, print the result line and exit.
 *
 * Output: one JSON line on stdout (idle and sink modes: a "ready" line, then
 * the final line). Exit status 0 on success, 2 on setup failure, 1 on usage error.
 *
 *   loadgen --mode echo --port P [--conns 100] [--depth 1] [--size 64]
 *           [--opcode text|binary] [--warmup 1] [--duration 5]
 *   loadgen --mode handshake --port P [--concurrency 16] [--warmup 1] [--duration 5]
 *   loadgen --mode idle --port P [--conns 10000] [--concurrency 256] [--hold 60]
 *   loadgen --mode sink --port P --expect M [--conns 1000] [--size S] [--opcode text]
 *           [--offer-deflate 1] [--concurrency 256] [--hold 60]
 *   --allow-masked 1   accept masked server frames (only for the raw byte-echo ceiling)
 *   --deflate-payload F  offer permessage-deflate (client_no_context_takeover) and send the bytes
 *                      of F (a raw-deflated SIZE-byte message, tail 00 00 ff ff removed) with RSV1
 *                      set; echoes are counted, not inflated (their length is not checked)
 *
 * Every loop is bounded: a global deadline (warm-up + duration + setup
 * timeout) ends the process whatever the server does.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ util */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void fill_random(void *buf, size_t n) {
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r <= 0) { /* fall back to rand() */
      for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rand();
      return;
    }
    p += r;
    n -= (size_t)r;
  }
}

/* ------------------------------------------------------ SHA-1 and base64 */

typedef struct { uint32_t h[5]; uint8_t buf[64]; uint64_t len; size_t n; } sha1_ctx;

#define ROL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))

static void sha1_block(sha1_ctx *c, const uint8_t *p) {
  uint32_t w[80], a, b, cc, d, e, t;
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3]; e = c->h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) { f = (b & cc) | (~b & d); k = 0x5A827999; }
    else if (i < 40) { f = b ^ cc ^ d; k = 0x6ED9EBA1; }
    else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8F1BBCDC; }
    else { f = b ^ cc ^ d; k = 0xCA62C1D6; }
    t = ROL(a, 5) + f + e + k + w[i];
    e = d; d = cc; cc = ROL(b, 30); b = a; a = t;
  }
  c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
  sha1_ctx c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, {0}, 0, 0};
  size_t i = 0;
  for (; i + 64 <= len; i += 64) sha1_block(&c, data + i);
  uint8_t tail[128] = {0};
  size_t rem = len - i;
  memcpy(tail, data + i, rem);
  tail[rem] = 0x80;
  size_t tl = rem + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (int k = 0; k < 8; k++) tail[tl - 1 - k] = (uint8_t)(bits >> (8 * k));
  sha1_block(&c, tail);
  if (tl == 128) sha1_block(&c, tail + 64);
  for (int k = 0; k < 5; k++) {
    out[4 * k] = (uint8_t)(c.h[k] >> 24); out[4 * k + 1] = (uint8_t)(c.h[k] >> 16);
    out[4 * k + 2] = (uint8_t)(c.h[k] >> 8); out[4 * k + 3] = (uint8_t)c.h[k];
  }
}

static void base64(const uint8_t *in, size_t n, char *out) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? tbl[v & 63] : '=';
  }
  out[o] = 0;
}

/* ---------------------------------------------------------------- config */

enum { MODE_ECHO, MODE_HANDSHAKE, MODE_IDLE, MODE_SINK };

static int g_mode = MODE_ECHO;
static int g_port = 0;
static int g_conns = 100;
static int g_depth = 1;
static size_t g_size = 64;
static int g_opcode = 2;
static double g_warmup = 1.0;
static double g_duration = 5.0;
static int g_concurrency = 16;
static double g_hold = 60.0;
static double g_setup_timeout = 30.0;
static int g_allow_masked = 0;
static const char *g_deflate_file = NULL; /* permessage-deflate: pre-compressed payload */
static int g_offer_deflate = 0;   /* sink: offer permessage-deflate (and require it) */
static uint64_t g_expect = 0;     /* sink: stop once this many messages have arrived */
static uint64_t g_compressed = 0; /* sink: messages whose first frame had RSV1 */   /* raw ceiling echoes our masked frames back */

/* ------------------------------------------------------------ connection */

enum { ST_FREE, ST_CONNECTING, ST_REQ, ST_RESP, ST_OPEN, ST_CLOSING, ST_WAIT_EOF };

typedef struct conn {
  int fd;
  int state;
  int want_out;            /* EPOLLOUT registered */
  char key[32];            /* base64 Sec-WebSocket-Key */
  char accept[32];         /* expected Sec-WebSocket-Accept */
  char req[512];
  int req_len, req_off;
  char resp[4096];
  int resp_len;
  /* frame parser for server frames */
  uint8_t hdr[14];
  int hdr_have, hdr_need;
  uint64_t pay_left;
  int f_fin, f_op;
  uint64_t msg_len;        /* data message length so far (fragments) */
  int msg_op;
  int msg_rsv1;            /* RSV1 of the message's first frame */
  /* echo: write queue of identical frames */
  uint64_t q;              /* frames queued, not yet fully written */
  size_t woff;             /* offset into the frame at the queue head */
  uint64_t sent_frames;    /* frames fully written (chooses template) */
  uint64_t *ts;            /* ring of send timestamps (depth) */
  int ts_head, ts_count;
  /* close frame write (handshake mode) */
  int close_off;
  uint64_t t_start;        /* handshake mode: cycle start */
} conn;

static int g_ep = -1;
static conn *g_conns_arr;
static int g_nconns;
static struct sockaddr_in g_addr;

/* frame templates (masked client frames with distinct random keys) */
#define NTPL 8
static uint8_t *g_tpl[NTPL];
static size_t g_tpl_len;
static uint8_t g_close_frame[8];

/* stats */
static int g_measuring = 0;
static int g_running = 1;         /* enqueue new messages */
static uint64_t g_msgs = 0, g_bytes = 0;
static uint64_t g_errors = 0, g_bad_len = 0, g_bad_op = 0, g_masked = 0;
static uint64_t g_handshakes = 0, g_hs_fail = 0, g_eof_no_close = 0, g_resets = 0;
static char g_first_error[256] = "";
#define HIST_MAX 2000000u /* µs, 2 s; above is clamped into the last bucket */
static uint32_t *g_hist;
static uint64_t g_hist_n = 0;

static void note_error(const char *what) {
  g_errors++;
  if (!g_first_error[0]) snprintf(g_first_error, sizeof g_first_error, "%s", what);
}

static void record_latency(uint64_t ns) {
  if (!g_measuring) return;
  uint64_t us = ns / 1000;
  if (us >= HIST_MAX) us = HIST_MAX - 1;
  g_hist[us]++;
  g_hist_n++;
}

static double hist_pct(double p) {
  if (g_hist_n == 0) return 0;
  uint64_t target = (uint64_t)(p * (double)g_hist_n);
  if (target >= g_hist_n) target = g_hist_n - 1;
  uint64_t acc = 0;
  for (uint32_t i = 0; i < HIST_MAX; i++) {
    acc += g_hist[i];
    if (acc > target) return (double)i;
  }
  return (double)(HIST_MAX - 1);
}

static void build_templates(void) {
  size_t n = g_size;
  uint8_t *payload = NULL;
  if (g_deflate_file) {
    FILE *fp = fopen(g_deflate_file, "rb");
    if (!fp) { fprintf(stderr, "cannot open %s\n", g_deflate_file); exit(1); }
    fseek(fp, 0, SEEK_END);
    n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    payload = malloc(n ? n : 1);
    if (fread(payload, 1, n, fp) != n) { fprintf(stderr, "short read %s\n", g_deflate_file); exit(1); }
    fclose(fp);
  }
  size_t hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
  g_tpl_len = hl + 4 + n;
  if (payload) {
    /* already filled from the file */
  } else if ((payload = malloc(n ? n : 1)) && g_opcode == 1) {
    for (size_t i = 0; i < n; i++) payload[i] = (uint8_t)('a' + (i % 26));
  } else {
    fill_random(payload, n);
  }
  int ntpl = n >= (1u << 20) ? 2 : NTPL;
  for (int t = 0; t < NTPL; t++) {
    if (t >= ntpl) { g_tpl[t] = g_tpl[t % ntpl]; continue; }
    uint8_t *f = malloc(g_tpl_len);
    f[0] = (uint8_t)(0x80 | (g_deflate_file ? 0x40 : 0) | g_opcode);
    if (n < 126) { f[1] = (uint8_t)(0x80 | n); }
    else if (n < 65536) { f[1] = 0x80 | 126; f[2] = (uint8_t)(n >> 8); f[3] = (uint8_t)n; }
    else { f[1] = 0x80 | 127; for (int k = 0; k < 8; k++) f[2 + k] = (uint8_t)((uint64_t)n >> (56 - 8 * k)); }
    uint8_t *mk = f + hl;
    fill_random(mk, 4);
    for (size_t i = 0; i < n; i++) f[hl + 4 + i] = payload[i] ^ mk[i & 3];
    g_tpl[t] = f;
  }
  free(payload);
  /* close frame: FIN|close, masked, 2-byte payload 1000 */
  uint8_t mk[4];
  fill_random(mk, 4);
  g_close_frame[0] = 0x88; g_close_frame[1] = 0x82;
  memcpy(g_close_frame + 2, mk, 4);
  g_close_frame[6] = 0x03 ^ mk[0]; g_close_frame[7] = 0xE8 ^ mk[1];
}

static void ep_set(conn *c, int out) {
  struct epoll_event ev = {0};
  ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
  ev.data.ptr = c;
  epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = out;
}

static int conn_start(conn *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { note_error("socket() failed (fd limit?)"); return -1; }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r = connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr);
  if (r < 0 && errno != EINPROGRESS) { close(fd); note_error("connect() failed"); return -1; }
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->state = ST_CONNECTING;
  c->hdr_need = 2;
  c->t_start = now_ns();
  uint8_t raw[16];
  fill_random(raw, 16);
  base64(raw, 16, c->key);
  char cat[96];
  int cl = snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
  uint8_t dig[20];
  sha1((uint8_t *)cat, (size_t)cl, dig);
  base64(dig, 20, c->accept);
  c->req_len = snprintf(c->req, sizeof c->req,
                        "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                        g_port, c->key,
                        g_deflate_file || g_offer_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n" : "");
  struct epoll_event ev = {0};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.ptr = c;
  c->want_out = 1;
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) { close(fd); note_error("epoll_ctl failed"); return -1; }
  return 0;
}

static void conn_close(conn *c) {
  if (c->fd >= 0) {
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->state = ST_FREE;
}

static int g_open = 0;        /* connections that completed the handshake */
static int g_started = 0;     /* idle mode: connections started */

static void enqueue(conn *c, int k) {
  uint64_t t = now_ns();
  for (int i = 0; i < k; i++) {
    int slot = (c->ts_head + c->ts_count) % g_depth;
    c->ts[slot] = t;
    c->ts_count++;
    c->q++;
  }
}

static void flush(conn *c) {
  if (c->state == ST_OPEN && g_mode == MODE_ECHO) {
    while (c->q > 0) {
      struct iovec iov[64];
      int n = 0;
      uint64_t idx = c->sent_frames;
      size_t off = c->woff;
      for (uint64_t i = 0; i < c->q && n < 64; i++, idx++) {
        iov[n].iov_base = g_tpl[idx % NTPL] + off;
        iov[n].iov_len = g_tpl_len - off;
        off = 0;
        n++;
      }
      ssize_t w = writev(c->fd, iov, n);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) { if (!c->want_out) ep_set(c, 1); return; }
        if (errno == EINTR) continue;
        note_error("write failed"); g_resets++; conn_close(c); return;
      }
      size_t left = (size_t)w;
      while (left > 0) {
        size_t rem = g_tpl_len - c->woff;
        if (left >= rem) { left -= rem; c->woff = 0; c->q--; c->sent_frames++; }
        else { c->woff += left; left = 0; }
      }
    }
    if (c->want_out) ep_set(c, 0);
    return;
  }
  if (c->state == ST_REQ) {
    while (c->req_off < c->req_len) {
      ssize_t w = write(c->fd, c->req + c->req_off, (size_t)(c->req_len - c->req_off));
      if (w < 0) {
        if (errno == EAGAIN) { if (!c->want_out) ep_set(c, 1); return; }
        note_error("request write failed"); g_hs_fail++; conn_close(c); return;
      }
      c->req_off += (int)w;
    }
    c->state = ST_RESP;
    ep_set(c, 0);
    return;
  }
  if (c->state == ST_CLOSING && c->close_off < 8) {
    ssize_t w = write(c->fd, g_close_frame + c->close_off, (size_t)(8 - c->close_off));
    if (w < 0) {
      if (errno == EAGAIN) { if (!c->want_out) ep_set(c, 1); return; }
      note_error("close write failed"); g_hs_fail++; conn_close(c); return;
    }
    c->close_off += (int)w;
    if (c->close_off >= 8 && c->want_out) ep_set(c, 0);
  }
}

static void on_open(conn *c) {
  c->state = ST_OPEN;
  g_open++;
  if (g_mode == MODE_ECHO) {
    c->ts = calloc((size_t)g_depth, sizeof(uint64_t));
    /* messages start once every connection is open (see main) */
  } else if (g_mode == MODE_HANDSHAKE) {
    c->state = ST_CLOSING;
    c->close_off = 0;
    flush(c);
  }
}

/* a complete frame arrived */
static void on_frame(conn *c) {
  int op = c->f_op;
  if (op >= 8) {
    if (op == 8) {
      if (c->state == ST_CLOSING) { c->state = ST_WAIT_EOF; return; }
      note_error("server sent close during echo");
      conn_close(c);
    }
    return; /* ping/pong ignored */
  }
  if (!c->f_fin) return;
  if (g_mode == MODE_SINK) {
    /* fan-out: count whole messages of the expected opcode (and length, uncompressed) */
    if (c->msg_op != g_opcode) g_bad_op++;
    if (!c->msg_rsv1 && c->msg_len != g_size) g_bad_len++;
    g_compressed += c->msg_rsv1;
    g_msgs++;
    g_bytes += c->msg_len;
    return;
  }
  if (g_mode != MODE_ECHO) return;
  if (c->msg_op != g_opcode) g_bad_op++;
  if (c->msg_len != g_size && !g_deflate_file) g_bad_len++;
  if (c->ts_count == 0) { note_error("echo without a message in flight"); return; }
  uint64_t t = now_ns();
  record_latency(t - c->ts[c->ts_head]);
  c->ts_head = (c->ts_head + 1) % g_depth;
  c->ts_count--;
  if (g_measuring) { g_msgs++; g_bytes += g_size; }
  if (g_running) enqueue(c, 1);
}

/* feed server bytes to the frame parser; returns -1 if the conn was closed */
static int parse(conn *c, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (c->pay_left > 0) {
      size_t take = n - i;
      if ((uint64_t)take > c->pay_left) take = (size_t)c->pay_left;
      c->pay_left -= take;
      if (c->f_op < 8) c->msg_len += take;
      i += take;
      if (c->pay_left == 0) { on_frame(c); if (c->fd < 0) return -1; }
      continue;
    }
    /* header */
    c->hdr[c->hdr_have++] = p[i++];
    if (c->hdr_have == 2) {
      uint8_t l7 = c->hdr[1] & 0x7f;
      if (c->hdr[1] & 0x80) { g_masked++; }
      c->hdr_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->hdr[1] & 0x80) ? 4 : 0);
    }
    if (c->hdr_have >= 2 && c->hdr_have == c->hdr_need) {
      uint8_t l7 = c->hdr[1] & 0x7f;
      uint64_t len = l7;
      if (l7 == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
      else if (l7 == 127) { len = 0; for (int k = 0; k < 8; k++) len = len << 8 | c->hdr[2 + k]; }
      c->f_fin = (c->hdr[0] & 0x80) != 0;
      c->f_op = c->hdr[0] & 0x0f;
      if (c->f_op != 0 && c->f_op < 8) c->msg_len = 0, c->msg_op = c->f_op, c->msg_rsv1 = (c->hdr[0] & 0x40) != 0;
      c->hdr_have = 0;
      c->hdr_need = 2;
      c->pay_left = len;
      if (len == 0) { on_frame(c); if (c->fd < 0) return -1; }
    }
  }
  return 0;
}

static int check_response(conn *c) {
  if (strncmp(c->resp, "HTTP/1.1 101", 12) != 0) return -1;
  if ((g_deflate_file || g_offer_deflate) && !strcasestr(c->resp, "permessage-deflate")) return -3;
  const char *p = c->resp;
  while ((p = strchr(p, '\n')) != NULL) {
    p++;
    if (strncasecmp(p, "sec-websocket-accept:", 21) == 0) {
      p += 21;
      while (*p == ' ' || *p == '\t') p++;
      size_t al = strlen(c->accept);
      if (strncmp(p, c->accept, al) == 0 && (p[al] == '\r' || p[al] == ' ')) return 0;
      return -2;
    }
  }
  return -2;
}

static uint8_t g_rbuf[1 << 18];

static void on_readable(conn *c) {
  for (int round = 0; round < 4 && c->fd >= 0; round++) {
    if (c->state == ST_RESP) {
      ssize_t r = read(c->fd, c->resp + c->resp_len, sizeof c->resp - 1 - (size_t)c->resp_len);
      if (r < 0) { if (errno == EAGAIN) return; note_error("read failed during handshake"); g_hs_fail++; conn_close(c); return; }
      if (r == 0) { note_error("EOF during handshake"); g_hs_fail++; conn_close(c); return; }
      c->resp_len += (int)r;
      c->resp[c->resp_len] = 0;
      char *end = strstr(c->resp, "\r\n\r\n");
      if (!end) {
        if (c->resp_len >= (int)sizeof c->resp - 1) { note_error("handshake response too long"); g_hs_fail++; conn_close(c); }
        return;
      }
      int cr = check_response(c);
      if (cr != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: %.60s", cr == -1 ? "handshake: not 101" : cr == -3 ? "server declined permessage-deflate" : "handshake: bad Sec-WebSocket-Accept", c->resp);
        for (char *q = msg; *q; q++) if (*q == '\r' || *q == '\n' || *q == '"' || *q == '\\') *q = ' ';
        note_error(msg); g_hs_fail++; conn_close(c); return;
      }
      size_t hl = (size_t)(end + 4 - c->resp);
      size_t extra = (size_t)c->resp_len - hl;
      on_open(c);
      if (extra > 0 && parse(c, (uint8_t *)c->resp + hl, extra) < 0) return;
      continue;
    }
    ssize_t r = read(c->fd, g_rbuf, sizeof g_rbuf);
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      if (c->state == ST_WAIT_EOF || c->state == ST_CLOSING) { g_resets++; }
      else { note_error("read failed (reset?)"); g_resets++; }
      conn_close(c);
      return;
    }
    if (r == 0) {
      if (c->state == ST_WAIT_EOF) {
        g_handshakes += g_measuring ? 1 : 0;
        record_latency(now_ns() - c->t_start);
      } else if (c->state == ST_CLOSING) {
        g_eof_no_close++;
      } else {
        note_error("server closed the connection");
      }
      conn_close(c);
      return;
    }
    if (parse(c, g_rbuf, (size_t)r) < 0) return;
    if ((size_t)r < sizeof g_rbuf) return;
  }
}

static void on_event(conn *c, uint32_t ev) {
  if (c->fd < 0) return;
  if (c->state == ST_CONNECTING) {
    if (ev & (EPOLLERR | EPOLLHUP)) {
      int err = 0; socklen_t el = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
      char msg[96]; snprintf(msg, sizeof msg, "connect failed: %s", strerror(err ? err : ECONNREFUSED));
      note_error(msg); g_hs_fail++; conn_close(c); return;
    }
    if (ev & EPOLLOUT) { c->state = ST_REQ; flush(c); }
    return;
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
  if (c->fd >= 0 && ((ev & EPOLLOUT) || (c->q > 0 && !c->want_out))) flush(c);
}

/* idle and sink modes: stdin joins the epoll set (data.ptr NULL); its EOF ends the run */
static void watch_stdin(void) {
  struct epoll_event ev = {0};
  ev.events = EPOLLIN;
  ev.data.ptr = NULL;
  epoll_ctl(g_ep, EPOLL_CTL_ADD, 0, &ev);
}

/* one round of the idle and sink modes' loop: waits up to 100 ms and handles what came; counts
   the connections the server closed in *closed; returns 0 once stdin has reached EOF */
static int hold_round(uint64_t *closed) {
  struct epoll_event evs[512];
  int alive = 1;
  int n = epoll_wait(g_ep, evs, 512, 100);
  for (int i = 0; i < n; i++) {
    if (evs[i].data.ptr == NULL) {
      char b[256];
      if (read(0, b, sizeof b) <= 0) alive = 0;
      continue;
    }
    conn *c = evs[i].data.ptr;
    int was_open = c->fd >= 0;
    on_event(c, evs[i].events);
    if (was_open && c->fd < 0) (*closed)++;
  }
  return alive;
}

static void usage(void) {
  fprintf(stderr, "usage: loadgen --mode echo|handshake|idle|sink --port P [--conns N] [--depth D] [--size S]\n"
                  "               [--opcode text|binary] [--warmup S] [--duration S] [--concurrency K] [--hold S]\n"
                  "               [--expect N] [--offer-deflate 1]\n");
  exit(1);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--mode")) g_mode = !strcmp(v, "echo") ? MODE_ECHO : !strcmp(v, "handshake") ? MODE_HANDSHAKE : !strcmp(v, "idle") ? MODE_IDLE : !strcmp(v, "sink") ? MODE_SINK : -1;
    else if (!strcmp(a, "--port")) g_port = atoi(v);
    else if (!strcmp(a, "--conns")) g_conns = atoi(v);
    else if (!strcmp(a, "--depth")) g_depth = atoi(v);
    else if (!strcmp(a, "--size")) g_size = (size_t)strtoull(v, NULL, 10);
    else if (!strcmp(a, "--opcode")) g_opcode = !strcmp(v, "text") ? 1 : 2;
    else if (!strcmp(a, "--warmup")) g_warmup = atof(v);
    else if (!strcmp(a, "--duration")) g_duration = atof(v);
    else if (!strcmp(a, "--concurrency")) g_concurrency = atoi(v);
    else if (!strcmp(a, "--hold")) g_hold = atof(v);
    else if (!strcmp(a, "--setup-timeout")) g_setup_timeout = atof(v);
    else if (!strcmp(a, "--allow-masked")) g_allow_masked = atoi(v);
    else if (!strcmp(a, "--deflate-payload")) g_deflate_file = v;
    else if (!strcmp(a, "--expect")) g_expect = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--offer-deflate")) g_offer_deflate = atoi(v);
    else usage();
    i++;
  }
  if (g_mode < 0 || g_port <= 0 || g_conns <= 0 || g_depth <= 0 || g_concurrency <= 0) usage();
  srand((unsigned)now_ns());
  signal(SIGPIPE, SIG_IGN);

  memset(&g_addr, 0, sizeof g_addr);
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((uint16_t)g_port);
  g_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  g_hist = calloc(HIST_MAX, sizeof(uint32_t));
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  build_templates();

  g_nconns = g_mode == MODE_HANDSHAKE ? g_concurrency : g_conns;
  g_conns_arr = calloc((size_t)g_nconns, sizeof(conn));
  for (int i = 0; i < g_nconns; i++) { g_conns_arr[i].fd = -1; g_conns_arr[i].state = ST_FREE; }

  struct epoll_event evs[512];
  double t0 = now_s();
  double setup_deadline = t0 + g_setup_timeout;

  /* ---------------- setup: open connections (echo, idle) ---------------- */
  if (g_mode == MODE_ECHO || g_mode == MODE_IDLE || g_mode == MODE_SINK) {
    int limit = g_mode != MODE_ECHO ? g_concurrency : g_nconns;
    while (g_open < g_nconns) {
      if (now_s() > setup_deadline) break;
      int pending = g_started - g_open - (int)g_hs_fail;
      while (g_started < g_nconns && pending < limit) {
        if (conn_start(&g_conns_arr[g_started]) < 0) { g_hs_fail++; }
        g_started++;
        pending++;
      }
      if (g_hs_fail > 0) break;
      int n = epoll_wait(g_ep, evs, 512, 50);
      for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
      if (g_hs_fail > 0) break;
    }
    if (g_open < g_nconns) {
      printf("{\"mode\":\"%s\",\"ok\":false,\"error\":\"setup: %d of %d connections open; %s\",\"setup_s\":%.3f}\n",
             g_mode == MODE_ECHO ? "echo" : g_mode == MODE_SINK ? "sink" : "idle", g_open, g_nconns, g_first_error[0] ? g_first_error : "timeout",
             now_s() - t0);
      return 2;
    }
  }
  double setup_s = now_s() - t0;

  if (g_mode == MODE_IDLE) {
    printf("{\"mode\":\"idle\",\"ready\":true,\"conns\":%d,\"setup_s\":%.3f}\n", g_open, setup_s);
    fflush(stdout);
    /* hold: wait on stdin EOF or timeout; keep draining sockets */
    watch_stdin();
    double end = now_s() + g_hold;
    uint64_t closed_by_server = 0;
    while (now_s() < end && hold_round(&closed_by_server)) {}
    for (int i = 0; i < g_nconns; i++) if (g_conns_arr[i].fd >= 0) conn_close(&g_conns_arr[i]);
    printf("{\"mode\":\"idle\",\"ok\":true,\"conns\":%d,\"closed_by_server\":%llu,\"setup_s\":%.3f,\"cpu_s\":%.3f}\n",
           g_open, (unsigned long long)closed_by_server, setup_s, cpu_s());
    return 0;
  }

  if (g_mode == MODE_SINK) {
    /* Fan-out: the connections only read. "ready" once all are open; the run ends when --expect
       messages have arrived (or at --hold seconds, or at EOF on stdin). */
    printf("{\"mode\":\"sink\",\"ready\":true,\"conns\":%d,\"setup_s\":%.3f}\n", g_open, setup_s);
    fflush(stdout);
    watch_stdin();
    double cpu_ready = cpu_s();
    double end = now_s() + g_hold;
    double first = 0, last = 0;
    uint64_t closed_by_server = 0;
    int alive = 1;
    while (alive && (g_expect == 0 || g_msgs < g_expect) && now_s() < end) {
      uint64_t before = g_msgs;
      alive = hold_round(&closed_by_server);
      if (g_msgs != before) {
        last = now_s();
        if (first == 0) first = last;
      }
    }
    double cpu = cpu_s() - cpu_ready;
    int ok = g_errors == 0 && g_bad_len == 0 && g_bad_op == 0 && g_masked == 0 && (g_expect == 0 || g_msgs >= g_expect);
    printf("{\"mode\":\"sink\",\"ok\":%s,\"conns\":%d,\"closed_by_server\":%llu,\"msgs\":%llu,\"bytes\":%llu,"
           "\"compressed\":%llu,\"first_to_last_s\":%.6f,\"cpu_s\":%.3f,\"errors\":%llu,\"bad_len\":%llu,"
           "\"bad_opcode\":%llu,\"masked_server_frames\":%llu,\"first_error\":\"%s\"}\n",
           ok ? "true" : "false", g_open, (unsigned long long)closed_by_server, (unsigned long long)g_msgs,
           (unsigned long long)g_bytes, (unsigned long long)g_compressed, last - first, cpu, (unsigned long long)g_errors,
           (unsigned long long)g_bad_len, (unsigned long long)g_bad_op, (unsigned long long)g_masked, g_first_error);
    fflush(stdout);
    for (int i = 0; i < g_nconns; i++) if (g_conns_arr[i].fd >= 0) conn_close(&g_conns_arr[i]);
    return ok ? 0 : 3;
  }

  /* ---------------- run: echo / handshake ---------------- */
  if (g_mode == MODE_ECHO) {
    for (int i = 0; i < g_nconns; i++) { enqueue(&g_conns_arr[i], g_depth); flush(&g_conns_arr[i]); }
  } else {
    for (int i = 0; i < g_nconns; i++) conn_start(&g_conns_arr[i]);
  }
  double run_start = now_s();
  double m_start = run_start + g_warmup;
  double m_end = m_start + g_duration;
  double cpu0 = 0, cpu1 = 0, wall0 = 0, wall1 = 0;
  uint64_t hs_fail0 = 0;
  while (1) {
    double t = now_s();
    if (!g_measuring && t >= m_start && wall0 == 0) {
      g_measuring = 1; cpu0 = cpu_s(); wall0 = t; hs_fail0 = g_hs_fail;
    }
    if (t >= m_end) break;
    int n = epoll_wait(g_ep, evs, 512, 20);
    for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    if (g_mode == MODE_HANDSHAKE) {
      for (int i = 0; i < g_nconns; i++) {
        conn *c = &g_conns_arr[i];
        if (c->state == ST_FREE) conn_start(c);
        else if ((c->state == ST_WAIT_EOF || c->state == ST_CLOSING) && now_ns() - c->t_start > 5000000000ull) {
          note_error("close handshake timed out (5 s)"); conn_close(c); conn_start(c);
        }
      }
    } else {
      int alive = 0;
      for (int i = 0; i < g_nconns; i++) alive += g_conns_arr[i].fd >= 0;
      if (alive == 0) break;
    }
  }
  g_measuring = 0;
  wall1 = now_s();
  cpu1 = cpu_s();
  if (wall0 == 0) { wall0 = wall1; cpu0 = cpu1; }
  double wall = wall1 - wall0;
  if (wall <= 0) wall = 1e-9;
  double cpu = cpu1 - cpu0;
  int ok = g_errors == 0 && g_bad_len == 0 && g_bad_op == 0 && (g_masked == 0 || g_allow_masked);
  if (g_mode == MODE_ECHO) {
    ok = ok && g_msgs > 0;
    printf("{\"mode\":\"echo\",\"deflate\":%s,\"ok\":%s,\"conns\":%d,\"depth\":%d,\"size\":%zu,\"opcode\":\"%s\","
           "\"duration_s\":%.3f,\"msgs\":%llu,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
           "\"cpu_s\":%.3f,\"cpu_pct\":%.1f,\"setup_s\":%.3f,\"errors\":%llu,\"bad_len\":%llu,\"bad_opcode\":%llu,"
           "\"masked_server_frames\":%llu,\"first_error\":\"%s\"}\n",
           g_deflate_file ? "true" : "false", ok ? "true" : "false", g_conns, g_depth, g_size, g_opcode == 1 ? "text" : "binary", wall,
           (unsigned long long)g_msgs, (double)g_msgs / wall, (double)g_bytes / wall / 1e6, hist_pct(0.5),
           hist_pct(0.99), cpu, 100.0 * cpu / wall, setup_s, (unsigned long long)g_errors,
           (unsigned long long)g_bad_len, (unsigned long long)g_bad_op, (unsigned long long)g_masked, g_first_error);
  } else {
    uint64_t fails = g_hs_fail - hs_fail0;
    ok = g_handshakes > 0 && fails == 0;
    printf("{\"mode\":\"handshake\",\"ok\":%s,\"concurrency\":%d,\"duration_s\":%.3f,\"handshakes\":%llu,"
           "\"handshakes_per_s\":%.1f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"cpu_s\":%.3f,\"cpu_pct\":%.1f,"
           "\"failures\":%llu,\"eof_without_close\":%llu,\"resets\":%llu,\"errors\":%llu,\"first_error\":\"%s\"}\n",
           ok ? "true" : "false", g_concurrency, wall, (unsigned long long)g_handshakes,
           (double)g_handshakes / wall, hist_pct(0.5), hist_pct(0.99), cpu, 100.0 * cpu / wall,
           (unsigned long long)fails, (unsigned long long)g_eof_no_close, (unsigned long long)g_resets,
           (unsigned long long)g_errors, g_first_error);
  }
  for (int i = 0; i < g_nconns; i++) if (g_conns_arr[i].fd >= 0) conn_close(&g_conns_arr[i]);
  return ok ? 0 : 3;
}
