// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * Loupe's socket capture: syscall tracepoints only (no kprobes, no fentry),
 * so it runs on hardened and VM kernels that ship without them.
 *
 * sys_enter_*: filter by process, resolve the fd to a TCP socket, save the
 *              arguments in loupe_calls.
 * sys_exit_*:  with the true byte count, advance the connection's stream
 *              offset, classify the first bytes, and for classified
 *              connections copy a bounded payload prefix into the ring
 *              buffer (struct loupe_data_event).
 * connect/accept record the role; close ends the connection.
 *
 * Entry points are thin; the logic lives in the *.bpf.h headers.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/classify.bpf.h"
#include "bpf/core_fixes.bpf.h"
#include "bpf/loupe_events.h"
#include "bpf/maps.bpf.h"
#include "bpf/socket.bpf.h"
#include "bpf/oom.bpf.h"
#include "bpf/process.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Clamps v to [0, max] in a way the verifier can follow: the empty asm
 * stops clang from folding the comparison into earlier arithmetic. */
#define LOUPE_CLAMP(v, max)                                                                       \
	do {                                                                                      \
		asm volatile("" : "+r"(v));                                                       \
		if ((v) > (max))                                                                  \
			(v) = (max);                                                              \
	} while (0)

/* --- payload copies ------------------------------------------------------ */

/*
 * Copies len bytes (at most LOUPE_PAYLOAD_MAX) from user address src into
 * this CPU's scratch payload at off. Returns the bytes copied or -1.
 *
 * Global, not static: the verifier checks a global function once, on its
 * own, and treats each call as returning an unknown int. Inlined into the
 * iovec loop, the clamps of every iteration multiplied the verifier's states
 * (16 iovecs: 575k instructions processed, 1.5 s per program; this way a few
 * thousand). Needs BTF function info (Linux 5.6+), below our ring buffer
 * floor anyway.
 */
__noinline int loupe_copy_chunk(__u32 off, __u64 src, __u64 len)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct loupe_data_scratch *s = bpf_map_lookup_elem(&loupe_scratch, &cpu);
	if (!s)
		return -1;
	off &= LOUPE_PAYLOAD_MAX - 1;
	LOUPE_CLAMP(len, LOUPE_PAYLOAD_MAX);
	if (bpf_probe_read_user(&s->payload[off], len, (const void *)src))
		return -1;
	return len;
}

static __always_inline __u32 loupe_copy_plain(__u64 buf, __u64 total, __u32 limit)
{
	__u64 n = total < limit ? total : limit;
	int copied = loupe_copy_chunk(0, buf, n);
	if (copied < 0) {
		loupe_count(LOUPE_CTR_READ_ERRORS, 1);
		return 0;
	}
	return copied;
}

/*
 * Copies what one iovec (at user address iov_addr) contributes, at payload
 * offset `copied`: at most limit - copied bytes and the total - copied the
 * call has left. Returns the bytes copied, or -1.
 *
 * Global for the verifier: the loop below over LOUPE_MAX_IOV entries then
 * costs a call per iteration instead of the whole clamp-and-copy logic.
 */
__noinline int loupe_copy_iovec(__u64 iov_addr, __u64 copied, __u64 total, __u64 limit)
{
	struct iovec v = {};
	if (bpf_probe_read_user(&v, sizeof(v), (const void *)iov_addr))
		return -1;
	if (copied >= limit || copied >= total)
		return 0;
	__u64 want = v.iov_len;
	if (want > total - copied)
		want = total - copied;
	if (want > limit - copied)
		want = limit - copied;
	if (want == 0)
		return 0;
	return loupe_copy_chunk(copied, (__u64)v.iov_base, want);
}

/* Copies across iovecs until `limit` bytes or the `total` the call moved. */
static __always_inline __u32 loupe_copy_iov(const struct iovec *iov, __u64 iovcnt, __u64 total,
					    __u32 limit)
{
	__u64 copied = 0;
	for (int i = 0; i < LOUPE_MAX_IOV; i++) {
		if (i >= iovcnt || copied >= limit || copied >= total)
			break;
		int n = loupe_copy_iovec((__u64)&iov[i], copied, total, limit);
		if (n < 0) {
			loupe_count(LOUPE_CTR_READ_ERRORS, 1);
			break;
		}
		copied += n;
	}
	return copied;
}

static __always_inline int loupe_read_msghdr(__u64 ptr, const struct iovec **iov, __u64 *iovcnt)
{
	struct user_msghdr m = {};
	if (bpf_probe_read_user(&m, sizeof(m), (const void *)ptr))
		return -1;
	*iov = m.msg_iov;
	*iovcnt = m.msg_iovlen;
	return 0;
}

/* The first bytes of the call's data, for the classifier. */
/* Where the call's data starts in user memory, and how many of its first
 * bytes are contiguous there (the first iovec's for the vector calls). */
static __always_inline __u64 loupe_head_address(const struct loupe_call_args *a, __u64 total,
						__u64 *contiguous)
{
	const struct iovec *iov = NULL;
	__u64 iovcnt = 0;
	struct iovec first = {};

	*contiguous = total;
	switch (a->buf_kind) {
	case LOUPE_BUF_PLAIN:
		return a->buf;
	case LOUPE_BUF_MSGHDR:
		if (loupe_read_msghdr(a->buf, &iov, &iovcnt))
			return 0;
		break;
	case LOUPE_BUF_IOVEC:
		iov = (const struct iovec *)a->buf;
		iovcnt = a->iovcnt;
		break;
	default:
		return 0;
	}
	if (iovcnt == 0 || bpf_probe_read_user(&first, sizeof(first), iov))
		return 0;
	if (*contiguous > first.iov_len)
		*contiguous = first.iov_len;
	return (__u64)first.iov_base;
}

/*
 * Reads the first bytes at user address src and classifies them. Returns
 * protocol << 8 | message kind, 0 when nothing matched.
 *
 * Global, not static, for the same reason as loupe_copy_chunk: verified once
 * on its own, the classifier's many branches no longer multiply the states
 * of every exit program (each new protocol would otherwise cost the
 * verifier more in every one of them).
 */
__noinline int loupe_classify_call(__u64 src, __u64 contiguous, __u64 total, __u64 offset)
{
	char head[LOUPE_CLASSIFY_BYTES] = {};
	__u64 n = contiguous;
	LOUPE_CLAMP(n, LOUPE_CLASSIFY_BYTES);
	if (src == 0 || bpf_probe_read_user(head, n, (const void *)src))
		return 0;
	struct loupe_classification c = loupe_classify(head, n, total, offset);
	return ((int)c.protocol << 8) | c.msg;
}

static __always_inline void loupe_emit_data(const struct loupe_call_args *a,
					    const struct loupe_conn_state *cs, __u64 offset,
					    __u64 total, __u32 tgid, __u32 tid, __u64 now)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct loupe_data_scratch *s = bpf_map_lookup_elem(&loupe_scratch, &cpu);
	if (!s)
		return;
	s->ev.hdr.type = LOUPE_EV_DATA;
	s->ev.hdr.abi = LOUPE_ABI_VERSION;
	s->ev.hdr.ts_ns = now;
	s->ev.hdr.conn_id = cs->conn_id;
	s->ev.hdr.cgroup_id = bpf_get_current_cgroup_id();
	s->ev.hdr.tgid = tgid;
	s->ev.hdr.tid = tid;
	s->ev.tuple = cs->tuple;
	s->ev.enter_ns = a->enter_ns;
	s->ev.stream_offset = offset;
	s->ev.total_len = total;
	s->ev.direction = a->direction;
	s->ev.protocol = cs->protocol;
	s->ev.role = cs->role;
	s->ev.syscall = a->syscall;

	/* HTTP/1 bodies are skipped by Content-Length; everything else is framed
	 * message by message and needs the headers deep inside large reads. */
	__u32 limit = cs->protocol == LOUPE_PROTO_HTTP1 ? payload_limit : payload_limit_framed;
	if (limit > LOUPE_PAYLOAD_MAX)
		limit = LOUPE_PAYLOAD_MAX;
	__u64 captured = 0;
	const struct iovec *iov = NULL;
	__u64 iovcnt = 0;
	switch (a->buf_kind) {
	case LOUPE_BUF_PLAIN:
		captured = loupe_copy_plain(a->buf, total, limit);
		break;
	case LOUPE_BUF_IOVEC:
		captured = loupe_copy_iov((const struct iovec *)a->buf, a->iovcnt, total, limit);
		break;
	case LOUPE_BUF_MSGHDR:
		if (loupe_read_msghdr(a->buf, &iov, &iovcnt) == 0)
			captured = loupe_copy_iov(iov, iovcnt, total, limit);
		else
			loupe_count(LOUPE_CTR_READ_ERRORS, 1);
		break;
	default:
		break; /* sendfile: bytes moved, nothing to copy */
	}
	LOUPE_CLAMP(captured, LOUPE_PAYLOAD_MAX);
	s->ev.captured_len = captured;
	__u64 size = sizeof(s->ev) + captured;
	s->ev.hdr.size = size;
	if (bpf_ringbuf_output(&loupe_events, s, size, loupe_wakeup_flags())) {
		loupe_count(LOUPE_CTR_EVENTS_LOST, 1);
		return;
	}
	loupe_count(LOUPE_CTR_EVENTS_EMITTED, 1);
	loupe_count(LOUPE_CTR_BYTES_COPIED, captured);
	loupe_count(LOUPE_CTR_BYTES_UNCOPIED, total - captured);
}

/* --- data calls ----------------------------------------------------------- */

static __always_inline int loupe_enter_data(struct loupe_sys_enter_ctx *ctx, __u8 syscall,
					    __u8 direction, __u8 buf_kind)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!loupe_tgid_wanted(pid_tgid >> 32))
		return 0;
	__u32 fd = (__u32)ctx->args[0];
	struct sock *sk = loupe_fd_to_stream_sock(fd);
	if (!sk)
		return 0;
	struct loupe_call_args a = {};
	a.enter_ns = bpf_ktime_get_ns();
	a.fd = fd;
	a.sock = (__u64)sk;
	a.syscall = syscall;
	a.direction = direction;
	a.buf_kind = buf_kind;
	a.buf = ctx->args[1];
	if (buf_kind == LOUPE_BUF_IOVEC)
		a.iovcnt = (__u32)ctx->args[2];
	bpf_map_update_elem(&loupe_calls, &pid_tgid, &a, BPF_ANY);
	return 0;
}

static __always_inline int loupe_exit_data(struct loupe_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct loupe_call_args *saved = bpf_map_lookup_elem(&loupe_calls, &pid_tgid);
	if (!saved)
		return 0;
	struct loupe_call_args a = *saved;
	bpf_map_delete_elem(&loupe_calls, &pid_tgid);
	long ret = ctx->ret;
	if (ret <= 0)
		return 0;

	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	__u64 now = bpf_ktime_get_ns();
	__u64 total = (__u64)ret;
	struct loupe_conn_key key = {.tgid = tgid, .fd = a.fd};
	struct loupe_conn_state *cs = bpf_map_lookup_elem(&loupe_conns, &key);
	if (!cs || cs->sock != a.sock) {
		cs = loupe_conn_start(tgid, tid, a.fd, (struct sock *)a.sock, LOUPE_ROLE_UNKNOWN,
				      LOUPE_ROLE_FROM_NONE, now);
		if (!cs)
			return 0;
	}
	if (!loupe_port_wanted(&cs->tuple))
		return 0;

	__u8 dir = a.direction & 1;
	/* Syscalls on one socket and direction do not overlap in practice (a
	 * second writer waits for the first, whose exit runs this program before
	 * it returns to user space), so read-then-add is enough; a fetching
	 * atomic would need BPF_FETCH (5.12+). */
	__u64 offset = cs->bytes[dir];
	__sync_fetch_and_add(&cs->bytes[dir], total);

	if (cs->protocol == LOUPE_PROTO_UNKNOWN) {
		if (cs->classify_attempts >= LOUPE_CLASSIFY_ATTEMPTS)
			return 0;
		cs->classify_attempts++;
		__u64 contiguous = 0;
		__u64 src = loupe_head_address(&a, total, &contiguous);
		int verdict = loupe_classify_call(src, contiguous, total, offset);
		__u8 protocol = (verdict >> 8) & 0xff, msg = verdict & 0xff;
		if (protocol == LOUPE_PROTO_UNKNOWN)
			return 0;
		cs->protocol = protocol;
		if (cs->role == LOUPE_ROLE_UNKNOWN) {
			/* Whoever sends requests is the client. */
			int sends_requests = (msg == LOUPE_MSG_REQUEST) == (dir == LOUPE_DIR_EGRESS);
			cs->role = sends_requests ? LOUPE_ROLE_CLIENT : LOUPE_ROLE_SERVER;
			cs->role_source = LOUPE_ROLE_FROM_TRAFFIC;
		}
		loupe_count(LOUPE_CTR_CONNS_CLASSIFIED, 1);
	}
	if (!cs->announced) {
		cs->announced = 1;
		loupe_emit_conn_event(LOUPE_EV_CONN_OPEN, tgid, tid, now, cs);
	}
	loupe_emit_data(&a, cs, offset, total, tgid, tid, now);
	return 0;
}

#define LOUPE_DATA_HOOKS(name, syscall, dir, kind)                                                \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                               \
	int loupe_enter_##name(struct loupe_sys_enter_ctx *ctx)                                   \
	{                                                                                         \
		return loupe_enter_data(ctx, syscall, dir, kind);                                 \
	}                                                                                         \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                                \
	int loupe_exit_##name(struct loupe_sys_exit_ctx *ctx)                                     \
	{                                                                                         \
		return loupe_exit_data(ctx);                                                      \
	}

LOUPE_DATA_HOOKS(read, LOUPE_SYS_READ, LOUPE_DIR_INGRESS, LOUPE_BUF_PLAIN)
LOUPE_DATA_HOOKS(write, LOUPE_SYS_WRITE, LOUPE_DIR_EGRESS, LOUPE_BUF_PLAIN)
LOUPE_DATA_HOOKS(readv, LOUPE_SYS_READV, LOUPE_DIR_INGRESS, LOUPE_BUF_IOVEC)
LOUPE_DATA_HOOKS(writev, LOUPE_SYS_WRITEV, LOUPE_DIR_EGRESS, LOUPE_BUF_IOVEC)
LOUPE_DATA_HOOKS(recvfrom, LOUPE_SYS_RECVFROM, LOUPE_DIR_INGRESS, LOUPE_BUF_PLAIN)
LOUPE_DATA_HOOKS(sendto, LOUPE_SYS_SENDTO, LOUPE_DIR_EGRESS, LOUPE_BUF_PLAIN)
LOUPE_DATA_HOOKS(recvmsg, LOUPE_SYS_RECVMSG, LOUPE_DIR_INGRESS, LOUPE_BUF_MSGHDR)
LOUPE_DATA_HOOKS(sendmsg, LOUPE_SYS_SENDMSG, LOUPE_DIR_EGRESS, LOUPE_BUF_MSGHDR)
/* sendfile(out_fd, in_fd, ...): bytes leave through out_fd without a user
 * buffer (nginx serves static bodies this way). No payload, but the bytes
 * must advance the stream so the parser can skip the body they carry. */
LOUPE_DATA_HOOKS(sendfile64, LOUPE_SYS_SENDFILE, LOUPE_DIR_EGRESS, LOUPE_BUF_NONE)

/* --- connection lifecycle ------------------------------------------------- */

static __always_inline int loupe_enter_lifecycle(struct loupe_sys_enter_ctx *ctx, __u8 syscall)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!loupe_tgid_wanted(pid_tgid >> 32))
		return 0;
	struct loupe_call_args a = {};
	a.enter_ns = bpf_ktime_get_ns();
	a.fd = (__u32)ctx->args[0];
	a.syscall = syscall;
	if (syscall == LOUPE_SYS_CONNECT && !loupe_fd_to_stream_sock(a.fd))
		return 0; /* UDP, Unix sockets: not ours */
	bpf_map_update_elem(&loupe_calls, &pid_tgid, &a, BPF_ANY);
	return 0;
}

static __always_inline int loupe_exit_lifecycle(struct loupe_sys_exit_ctx *ctx, __u8 syscall)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct loupe_call_args *saved = bpf_map_lookup_elem(&loupe_calls, &pid_tgid);
	if (!saved)
		return 0;
	struct loupe_call_args a = *saved;
	bpf_map_delete_elem(&loupe_calls, &pid_tgid);
	if (a.syscall != syscall)
		return 0;
	long ret = ctx->ret;
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	if (syscall == LOUPE_SYS_CONNECT) {
		/* A non-blocking connect returns -EINPROGRESS with the local port
		 * already bound: the connection exists from here on. */
		if (ret != 0 && ret != -LOUPE_EINPROGRESS)
			return 0;
		struct sock *sk = loupe_fd_to_stream_sock(a.fd);
		if (sk)
			loupe_conn_start(tgid, tid, a.fd, sk, LOUPE_ROLE_CLIENT, LOUPE_ROLE_FROM_CONNECT,
					 a.enter_ns);
		return 0;
	}
	/* accept/accept4 return the new connection's fd. */
	if (ret < 0)
		return 0;
	struct sock *sk = loupe_fd_to_stream_sock((__u32)ret);
	if (sk)
		loupe_conn_start(tgid, tid, (__u32)ret, sk, LOUPE_ROLE_SERVER, LOUPE_ROLE_FROM_ACCEPT,
				 bpf_ktime_get_ns());
	return 0;
}

#define LOUPE_LIFECYCLE_HOOKS(name, syscall)                                                      \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                               \
	int loupe_enter_##name(struct loupe_sys_enter_ctx *ctx)                                   \
	{                                                                                         \
		return loupe_enter_lifecycle(ctx, syscall);                                       \
	}                                                                                         \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                                \
	int loupe_exit_##name(struct loupe_sys_exit_ctx *ctx)                                     \
	{                                                                                         \
		return loupe_exit_lifecycle(ctx, syscall);                                        \
	}

LOUPE_LIFECYCLE_HOOKS(connect, LOUPE_SYS_CONNECT)
LOUPE_LIFECYCLE_HOOKS(accept, LOUPE_SYS_ACCEPT)
LOUPE_LIFECYCLE_HOOKS(accept4, LOUPE_SYS_ACCEPT)

SEC("tracepoint/syscalls/sys_enter_close")
int loupe_enter_close(struct loupe_sys_enter_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	if (tgid == self_tgid)
		return 0;
	struct loupe_conn_key key = {.tgid = tgid, .fd = (__u32)ctx->args[0]};
	struct loupe_conn_state *cs = bpf_map_lookup_elem(&loupe_conns, &key);
	if (!cs)
		return 0;
	if (cs->announced)
		loupe_emit_conn_event(LOUPE_EV_CONN_CLOSE, tgid, (__u32)pid_tgid, bpf_ktime_get_ns(),
				      cs);
	bpf_map_delete_elem(&loupe_conns, &key);
	return 0;
}
