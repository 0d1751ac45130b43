/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process lifecycle: sched:sched_process_exec (fs/exec.c exec_binprm(), after
 * the new program is loaded and the comm set) and sched:sched_process_exit
 * (kernel/exit.c do_exit(), once per exiting thread). Both run in the
 * context of the task concerned.
 *
 * User space reads /proc/<tgid> on an exec, while a short-lived process
 * still exists and with its new program, and forgets a process when it
 * exits (so a reused pid is resolved afresh). See struct loupe_process_event.
 */
#ifndef LOUPE_BPF_PROCESS_BPF_H_
#define LOUPE_BPF_PROCESS_BPF_H_

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "bpf/loupe_events.h"
#include "bpf/maps.bpf.h"
#include "bpf/socket.bpf.h"

/* include/linux/sched.h: a #define, so not in vmlinux.h. Stable since 2.6. */
#define LOUPE_PF_KTHREAD 0x00200000

static __always_inline void loupe_emit_process_event(__u8 kind, __u64 pid_tgid,
						     struct task_struct *task, __u64 flags)
{
	struct loupe_process_event *ev = bpf_ringbuf_reserve(&loupe_events, sizeof(*ev), 0);
	if (!ev) {
		loupe_count(LOUPE_CTR_EVENTS_LOST, 1);
		return;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->hdr.type = LOUPE_EV_PROCESS;
	ev->hdr.abi = LOUPE_ABI_VERSION;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ts_ns = bpf_ktime_get_ns();
	ev->hdr.cgroup_id = bpf_get_current_cgroup_id();
	ev->hdr.tgid = pid_tgid >> 32;
	ev->hdr.tid = (__u32)pid_tgid;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->kind = kind;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_ringbuf_submit(ev, flags);
	loupe_count(LOUPE_CTR_EVENTS_EMITTED, 1);
}

SEC("tracepoint/sched/sched_process_exec")
int loupe_sched_process_exec(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!loupe_tgid_wanted(pid_tgid >> 32))
		return 0;
	/* Woken at once: the process may be gone by the next poll timeout,
	 * taking its environment (OTEL_SERVICE_NAME) with it. */
	loupe_emit_process_event(LOUPE_PROCESS_EXEC, pid_tgid,
				 (struct task_struct *)bpf_get_current_task(), BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int loupe_sched_process_exit(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	/* Only the thread-group leader's exit ends the process (for user
	 * space's purposes); other threads exit one by one. */
	if ((__u32)pid_tgid != tgid || !loupe_tgid_wanted(tgid))
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, flags) & LOUPE_PF_KTHREAD)
		return 0;
	/* A reused pid gets the wake-up of a first connection again. */
	bpf_map_delete_elem(&loupe_known_procs, &tgid);
	loupe_emit_process_event(LOUPE_PROCESS_EXIT, pid_tgid, task, loupe_wakeup_flags());
	return 0;
}

#endif /* LOUPE_BPF_PROCESS_BPF_H_ */
