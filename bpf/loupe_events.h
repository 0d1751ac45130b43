/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The contract between Loupe's kernel programs and user space.
 *
 * This header is included by bpf/loupe.bpf.c (through vmlinux.h types) and by
 * the C++ side (decoders/events.h), so it uses only fixed-width C types and
 * explicit padding. It is append-only: new event types and new fields at the
 * end of a struct bump LOUPE_ABI_VERSION; existing offsets never move. The C++
 * side pins every size and offset with static_assert, so drift fails the build.
 */
#ifndef LOUPE_BPF_LOUPE_EVENTS_H_
#define LOUPE_BPF_LOUPE_EVENTS_H_

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define LOUPE_ABI_VERSION 3 /* 2: LOUPE_EV_OOM_KILL; 3: LOUPE_EV_PROCESS */

/* Hard upper bound of the payload prefix copied per syscall. The run-time
 * prefix (--payload-bytes) is at most this. Must be a power of two: the
 * kernel side masks offsets with (LOUPE_PAYLOAD_MAX - 1) for the verifier. */
#define LOUPE_PAYLOAD_MAX 32768
/* iovec entries walked per readv/writev/recvmsg/sendmsg call. gRPC sends a
 * batch of HTTP/2 frames as one sendmsg with an iovec per slice (26 for a
 * first unary call, more under load). */
#define LOUPE_MAX_IOV 128
/* Bytes looked at by the in-kernel protocol classifier. */
#define LOUPE_CLASSIFY_BYTES 16
/* Data calls on a connection that may be tried for classification before
 * the connection is given up as "not decoded". Joining a keep-alive
 * connection mid-body needs a few tries to reach the next message start. */
#define LOUPE_CLASSIFY_ATTEMPTS 16
#define LOUPE_COMM_LEN 16

enum loupe_event_type {
	LOUPE_EV_CONN_OPEN = 1,  /* struct loupe_conn_event */
	LOUPE_EV_DATA = 2,       /* struct loupe_data_event + payload */
	LOUPE_EV_CONN_CLOSE = 3, /* struct loupe_conn_event */
	LOUPE_EV_OOM_KILL = 4,   /* struct loupe_oom_event (ABI 2) */
	LOUPE_EV_PROCESS = 5,    /* struct loupe_process_event (ABI 3) */
};

enum loupe_direction {
	LOUPE_DIR_EGRESS = 0,  /* the traced process wrote / sent */
	LOUPE_DIR_INGRESS = 1, /* the traced process read / received */
};

enum loupe_role {
	LOUPE_ROLE_UNKNOWN = 0,
	LOUPE_ROLE_CLIENT = 1, /* connect()ed, or inferred from the traffic */
	LOUPE_ROLE_SERVER = 2, /* accept()ed, or inferred from the traffic */
};

/* How the role was learned. */
enum loupe_role_source {
	LOUPE_ROLE_FROM_NONE = 0,
	LOUPE_ROLE_FROM_CONNECT = 1,
	LOUPE_ROLE_FROM_ACCEPT = 2,
	LOUPE_ROLE_FROM_TRAFFIC = 3,
};

/* Protocols the kernel classifier knows. Append only. */
enum loupe_protocol {
	LOUPE_PROTO_UNKNOWN = 0,
	LOUPE_PROTO_HTTP1 = 1,
	LOUPE_PROTO_HTTP2 = 2, /* HTTP/2 (h2c prior knowledge; gRPC) */
	LOUPE_PROTO_POSTGRES = 3, /* PostgreSQL frontend/backend protocol v3 */
	LOUPE_PROTO_MYSQL = 4,    /* MySQL / MariaDB client/server protocol */
	LOUPE_PROTO_REDIS = 5,    /* RESP2 / RESP3 */
};

enum loupe_syscall {
	LOUPE_SYS_NONE = 0,
	LOUPE_SYS_READ = 1,
	LOUPE_SYS_WRITE = 2,
	LOUPE_SYS_READV = 3,
	LOUPE_SYS_WRITEV = 4,
	LOUPE_SYS_RECVFROM = 5,
	LOUPE_SYS_SENDTO = 6,
	LOUPE_SYS_RECVMSG = 7,
	LOUPE_SYS_SENDMSG = 8,
	LOUPE_SYS_SENDFILE = 9,
	LOUPE_SYS_CONNECT = 10,
	LOUPE_SYS_ACCEPT = 11,
	LOUPE_SYS_CLOSE = 12,
};

/* Indices of the per-CPU counter array (map loupe_counters). Append only. */
enum loupe_counter {
	LOUPE_CTR_EVENTS_EMITTED = 0, /* events written to the ring buffer */
	LOUPE_CTR_EVENTS_LOST = 1,    /* events dropped: ring buffer full */
	LOUPE_CTR_BYTES_COPIED = 2,   /* payload bytes copied into events */
	LOUPE_CTR_CONNS_SEEN = 3,     /* TCP sockets entered in the connection map */
	LOUPE_CTR_CONNS_CLASSIFIED = 4, /* connections a protocol was found for */
	LOUPE_CTR_BYTES_UNCOPIED = 5, /* payload bytes beyond the prefix (truncation) */
	LOUPE_CTR_READ_ERRORS = 6,    /* bpf_probe_read_user failures on payload */
	LOUPE_CTR__COUNT = 7,
};

struct loupe_event_header {
	__u16 type;     /* enum loupe_event_type */
	__u16 abi;      /* LOUPE_ABI_VERSION of the producer */
	__u32 size;     /* bytes of this event, header and payload included */
	__u64 ts_ns;    /* CLOCK_MONOTONIC at syscall exit */
	__u64 conn_id;  /* unique per traced connection for this agent run */
	__u64 cgroup_id;
	__u32 tgid;     /* process id (host pid namespace) */
	__u32 tid;      /* thread id (host pid namespace) */
};

struct loupe_tuple {
	__u16 family;      /* AF_INET (2) or AF_INET6 (10) */
	__u16 local_port;  /* host byte order */
	__u16 remote_port; /* host byte order */
	__u16 _pad0;
	__u8 local_addr[16];  /* IPv4: first 4 bytes, network order */
	__u8 remote_addr[16];
};

/* LOUPE_EV_CONN_OPEN is sent once per connection, just before its first
 * data event; LOUPE_EV_CONN_CLOSE when the traced process closes a
 * connection that was announced. */
struct loupe_conn_event {
	struct loupe_event_header hdr;
	struct loupe_tuple tuple;
	__u64 start_ns;       /* connect/accept exit, or first sighting */
	__u64 bytes_egress;   /* stream bytes so far, copied or not */
	__u64 bytes_ingress;
	__u8 role;            /* enum loupe_role */
	__u8 role_source;     /* enum loupe_role_source */
	__u8 protocol;        /* enum loupe_protocol */
	__u8 _pad0[5];
	char comm[LOUPE_COMM_LEN]; /* task comm of the thread that sent it */
};

/* LOUPE_EV_DATA: one read- or write-like syscall on a classified
 * connection. captured_len bytes of payload follow the struct;
 * total_len is what the syscall really moved, so total_len - captured_len
 * bytes at stream_offset + captured_len are a known gap. */
struct loupe_data_event {
	struct loupe_event_header hdr;
	struct loupe_tuple tuple;
	__u64 enter_ns;      /* CLOCK_MONOTONIC at syscall entry */
	__u64 stream_offset; /* bytes of this direction before this call */
	__u64 total_len;
	__u32 captured_len;
	__u8 direction;      /* enum loupe_direction */
	__u8 protocol;       /* enum loupe_protocol */
	__u8 role;           /* enum loupe_role */
	__u8 syscall;        /* enum loupe_syscall */
};

/* --- OOM kills (ABI 2) ---------------------------------------------------- */

/* Memory cgroups walked upwards from the trigger task's, looking for the one
 * in OOM. */
#define LOUPE_OOM_MEMCG_DEPTH 16
/* A memory cgroup counts as "at its limit" when its usage is within this
 * many pages of it. A cgroup OOM fails a charge of at most 8 pages (larger
 * orders do not invoke the OOM killer), but other tasks may uncharge a
 * little between the failure and the kill. */
#define LOUPE_OOM_LIMIT_SLACK_PAGES 256

enum loupe_oom_kind {
	LOUPE_OOM_KIND_UNKNOWN = 0, /* the memory cgroups could not be read */
	LOUPE_OOM_KIND_CGROUP = 1,  /* a memory cgroup's limit was hit */
	LOUPE_OOM_KIND_GLOBAL = 2,  /* the machine (or a NUMA/cpuset domain) ran out */
};

/* Bits of loupe_oom_event.flags: how the event was filled in. */
enum loupe_oom_flags {
	/* The tracepoint carried the victim's comm (commit 72ba14deb40a, which
	 * also added the memory counters, uid and oom_score_adj); without it
	 * the event has victim_pid only. */
	LOUPE_OOM_F_TP_DETAILS = 1 << 0,
	/* The trigger's memory cgroup is on a cgroup v1 hierarchy. */
	LOUPE_OOM_F_MEMCG_V1 = 1 << 1,
	/* v1: the trigger's memory cgroup or an ancestor holds the memcg OOM
	 * lock (set on the cgroup in OOM and its subtree for the kill); the
	 * topmost such is oom_memcg_id. */
	LOUPE_OOM_F_BY_OOM_LOCK = 1 << 2,
	/* The trigger's memory cgroup or an ancestor has its usage (memory, or
	 * on v1 memory+swap) within LOUPE_OOM_LIMIT_SLACK_PAGES of its limit;
	 * the nearest such is oom_memcg_id unless LOUPE_OOM_F_BY_OOM_LOCK. */
	LOUPE_OOM_F_BY_LIMIT = 1 << 3,
	/* The trigger task was charging a memory cgroup other than its own
	 * (task->active_memcg, e.g. a kernel thread working for a cgroup). */
	LOUPE_OOM_F_REMOTE_CHARGE = 1 << 4,
};

/*
 * LOUPE_EV_OOM_KILL: the OOM killer chose a victim (tracepoint
 * oom:mark_victim). One event per killed process: a memory.oom.group kill
 * sends one per member.
 *
 * The tracepoint runs in the task that invoked the OOM killer (the
 * "trigger": the one whose allocation or charge failed), which is usually
 * not the victim. The header describes the trigger: tgid/tid its ids,
 * cgroup_id its cgroup v2 id (bpf_get_current_cgroup_id), ts_ns the time of
 * the kill; conn_id is 0.
 *
 * The memory cgroup facts are read from the trigger's side, since BPF cannot
 * reach the victim's task_struct from its pid: in a cgroup OOM the victim
 * is chosen from the subtree of oom_memcg_id, which contains the trigger.
 * memcg ids are kernfs node ids, equal to the inode number of the cgroup's
 * directory in the hierarchy the memory controller is mounted on (v1
 * "memory" or the v2 unified hierarchy).
 */
struct loupe_oom_event {
	struct loupe_event_header hdr;
	__u32 victim_pid;     /* tracepoint pid: task id of the chosen task (its
			       * process's tgid unless that thread had exited) */
	__u32 victim_uid;     /* real uid, initial user namespace */
	__u64 total_vm_kb;    /* victim's mm at the kill, as the kernel log line */
	__u64 anon_rss_kb;
	__u64 file_rss_kb;
	__u64 shmem_rss_kb;
	__u64 pgtables_kb;
	__u64 oom_memcg_id;     /* the memory cgroup in OOM; 0 unless kind is CGROUP */
	__u64 trigger_memcg_id; /* memory cgroup charged by the trigger; 0 if unknown */
	/* Usage and limit of oom_memcg_id at the kill, in this host's pages:
	 * the counter at its limit (memory, or v1 memory+swap), else memory.
	 * 0 unless kind is CGROUP. */
	__u64 memcg_usage_pages;
	__u64 memcg_limit_pages;
	__s16 oom_score_adj;
	__u8 kind;            /* enum loupe_oom_kind */
	__u8 flags;           /* enum loupe_oom_flags */
	__u32 _pad0;
	char victim_comm[LOUPE_COMM_LEN];  /* "" without LOUPE_OOM_F_TP_DETAILS */
	char trigger_comm[LOUPE_COMM_LEN];
};

/* --- Process lifecycle (ABI 3) ------------------------------------------- */

enum loupe_process_kind {
	LOUPE_PROCESS_EXEC = 1, /* sched:sched_process_exec: a new program runs */
	LOUPE_PROCESS_EXIT = 2, /* sched:sched_process_exit of the group leader */
};

/*
 * LOUPE_EV_PROCESS: a process started a new program or ended. The header
 * describes the process: tgid, tid (== tgid for an exit; the exec'ing thread,
 * which becomes the leader, for an exec), its v2 cgroup id, ts_ns the time;
 * conn_id is 0. An exit is sent once per process, when its thread-group
 * leader exits (other threads may still be finishing), not per thread.
 * Kernel threads, the agent itself and processes outside the pid filter are
 * skipped.
 */
struct loupe_process_event {
	struct loupe_event_header hdr;
	__u32 ppid;  /* tgid of the real parent at the event */
	__u8 kind;   /* enum loupe_process_kind */
	__u8 _pad0[3];
	char comm[LOUPE_COMM_LEN]; /* exec: the new program's; exit: the last */
};

#endif /* LOUPE_BPF_LOUPE_EVENTS_H_ */
