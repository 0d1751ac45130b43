/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OOM kills: oom:mark_victim, fired by mark_oom_victim() in mm/oom_kill.c
 * once the OOM killer has chosen a victim and sent it SIGKILL, in the
 * context of the task that invoked the OOM killer (the "trigger").
 *
 * What the victim was is in the tracepoint's fields. Whether the OOM was a
 * cgroup OOM, and which memory cgroup, is read from the trigger's side: its
 * memory cgroup and the ancestors of it are the only candidates (the OOM
 * killer of a cgroup OOM runs in a task charging that cgroup's subtree), and
 * they are checked while the victim's memory is still charged to them.
 * See struct loupe_oom_event for what each field means.
 */
#ifndef LOUPE_BPF_OOM_BPF_H_
#define LOUPE_BPF_OOM_BPF_H_

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "bpf/loupe_events.h"
#include "bpf/maps.bpf.h"
#include "bpf/socket.bpf.h"

/* The css is the first member of struct mem_cgroup (mm/memcontrol.c's
 * mem_cgroup_from_css() is a container_of at offset 0 in every kernel with
 * a css-based memcg), so a css pointer of the memory controller is the
 * mem_cgroup pointer. */
static __always_inline struct mem_cgroup *loupe_memcg_of_css(struct cgroup_subsys_state *css)
{
	return (struct mem_cgroup *)css;
}

/* The memory cgroup the current task charges: task->active_memcg when a
 * remote charge is in progress (set_active_memcg(), Linux 5.10+), else its
 * own. NULL when the kernel has no memory controller or reads fail. */
static __always_inline struct mem_cgroup *loupe_current_memcg(__u8 *flags)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (bpf_core_field_exists(task->active_memcg)) {
		struct mem_cgroup *active = BPF_CORE_READ(task, active_memcg);
		if (active) {
			*flags |= LOUPE_OOM_F_REMOTE_CHARGE;
			return active;
		}
	}
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return NULL;
	/* Controller ids depend on the kernel's configuration: relocated. */
	int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id < 0 || id >= bpf_core_enum_value(enum cgroup_subsys_id, CGROUP_SUBSYS_COUNT))
		return NULL;
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	if (!cset)
		return NULL;
	struct cgroup_subsys_state *css = NULL;
	if (bpf_core_read(&css, sizeof(css), &cset->subsys[id]))
		return NULL;
	return loupe_memcg_of_css(css);
}

/* Pages left under a limit; 0 when usage is at or above it (a limit can be
 * lowered below the usage). */
static __always_inline __u64 loupe_headroom(__u64 usage, __u64 max)
{
	return usage >= max ? 0 : max - usage;
}

static __always_inline __u64 loupe_memcg_id(struct mem_cgroup *memcg)
{
	return BPF_CORE_READ(memcg, css.cgroup, kn, id);
}

/*
 * Walks from the trigger's memory cgroup towards the root (at most
 * LOUPE_OOM_MEMCG_DEPTH levels) and fills in kind, flags, oom_memcg_id and
 * the OOM cgroup's usage and limit. Two signals, both reported in flags:
 *
 * - cgroup v1: mem_cgroup_oom_trylock() sets oom_lock on the OOM cgroup and
 *   its whole subtree for the duration of the kill, so the topmost locked
 *   ancestor is the cgroup in OOM. Exact; it wins when present.
 * - v1 and v2: a cgroup OOM happens when a charge does not fit under some
 *   ancestor's limit, so the nearest ancestor whose usage (memory, or on v1
 *   memory+swap) is within LOUPE_OOM_LIMIT_SLACK_PAGES of its limit is taken
 *   for the cgroup in OOM. A global OOM while the trigger's cgroup happens
 *   to sit at its limit is misread as a cgroup OOM.
 *
 * The root cgroup has no limit and is never the answer; with neither signal
 * the OOM is global.
 */
static __always_inline void loupe_oom_find_memcg(struct loupe_oom_event *ev)
{
	struct mem_cgroup *memcg = loupe_current_memcg(&ev->flags);
	if (!memcg) {
		/* No memory controller at all: no cgroup can be in OOM. */
		ev->kind = bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id)
				   ? LOUPE_OOM_KIND_UNKNOWN
				   : LOUPE_OOM_KIND_GLOBAL;
		return;
	}
	ev->trigger_memcg_id = loupe_memcg_id(memcg);
	/* The default (v2) hierarchy has id 0; v1 hierarchies count from 1. */
	int v1 = BPF_CORE_READ(memcg, css.cgroup, root, hierarchy_id) != 0;
	if (v1)
		ev->flags |= LOUPE_OOM_F_MEMCG_V1;

	struct mem_cgroup *locked = NULL, *at_limit = NULL;
	__u64 limit_usage = 0, limit_max = 0;
	for (int i = 0; i < LOUPE_OOM_MEMCG_DEPTH && memcg; i++) {
		struct cgroup_subsys_state *parent = BPF_CORE_READ(memcg, css.parent);
		if (!parent)
			break; /* the root: unlimited */
		if (v1 && bpf_core_field_exists(memcg->oom_lock) && BPF_CORE_READ(memcg, oom_lock))
			locked = memcg;
		if (!at_limit) {
			__u64 usage = BPF_CORE_READ(memcg, memory.usage.counter);
			__u64 max = BPF_CORE_READ(memcg, memory.max);
			if (v1 && bpf_core_field_exists(memcg->memsw)) {
				__u64 sw_usage = BPF_CORE_READ(memcg, memsw.usage.counter);
				__u64 sw_max = BPF_CORE_READ(memcg, memsw.max);
				/* Whichever counter is nearer its limit failed. */
				if (loupe_headroom(sw_usage, sw_max) < loupe_headroom(usage, max)) {
					usage = sw_usage;
					max = sw_max;
				}
			}
			if (loupe_headroom(usage, max) <= LOUPE_OOM_LIMIT_SLACK_PAGES) {
				at_limit = memcg;
				limit_usage = usage;
				limit_max = max;
			}
		}
		memcg = loupe_memcg_of_css(parent);
	}

	/* Both signals are reported; the exact one wins. */
	if (locked)
		ev->flags |= LOUPE_OOM_F_BY_OOM_LOCK;
	if (at_limit)
		ev->flags |= LOUPE_OOM_F_BY_LIMIT;
	struct mem_cgroup *oom = locked ? locked : at_limit;
	if (!oom) {
		ev->kind = LOUPE_OOM_KIND_GLOBAL;
		return;
	}
	ev->kind = LOUPE_OOM_KIND_CGROUP;
	ev->oom_memcg_id = loupe_memcg_id(oom);
	if (oom == at_limit) {
		ev->memcg_usage_pages = limit_usage;
		ev->memcg_limit_pages = limit_max;
	} else {
		ev->memcg_usage_pages = BPF_CORE_READ(oom, memory.usage.counter);
		ev->memcg_limit_pages = BPF_CORE_READ(oom, memory.max);
	}
}

SEC("tracepoint/oom/mark_victim")
int loupe_oom_mark_victim(struct trace_event_raw_mark_victim *ctx)
{
	struct loupe_oom_event *ev = bpf_ringbuf_reserve(&loupe_events, sizeof(*ev), 0);
	if (!ev) {
		loupe_count(LOUPE_CTR_EVENTS_LOST, 1);
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	ev->hdr.type = LOUPE_EV_OOM_KILL;
	ev->hdr.abi = LOUPE_ABI_VERSION;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ts_ns = bpf_ktime_get_ns();
	ev->hdr.cgroup_id = bpf_get_current_cgroup_id();
	ev->hdr.tgid = pid_tgid >> 32;
	ev->hdr.tid = (__u32)pid_tgid;
	bpf_get_current_comm(ev->trigger_comm, sizeof(ev->trigger_comm));

	ev->victim_pid = ctx->pid;
	/* Everything but pid came with commit 72ba14deb40a ("mm: update
	 * mark_victim tracepoints fields", 2024; backported to 6.1.y). Each
	 * field is guarded on its own: vendor kernels carry other subsets. */
	if (bpf_core_field_exists(ctx->__data_loc_comm)) {
		ev->flags |= LOUPE_OOM_F_TP_DETAILS;
		/* __data_loc: the string's offset from the start of the record in
		 * the low 16 bits, its length in the high 16. */
		__u32 loc = ctx->__data_loc_comm;
		bpf_probe_read_kernel_str(ev->victim_comm, sizeof(ev->victim_comm),
					  (const char *)ctx + (loc & 0xffff));
	}
	if (bpf_core_field_exists(ctx->total_vm))
		ev->total_vm_kb = ctx->total_vm;
	if (bpf_core_field_exists(ctx->anon_rss))
		ev->anon_rss_kb = ctx->anon_rss;
	if (bpf_core_field_exists(ctx->file_rss))
		ev->file_rss_kb = ctx->file_rss;
	if (bpf_core_field_exists(ctx->shmem_rss))
		ev->shmem_rss_kb = ctx->shmem_rss;
	if (bpf_core_field_exists(ctx->pgtables))
		ev->pgtables_kb = ctx->pgtables;
	if (bpf_core_field_exists(ctx->uid))
		ev->victim_uid = ctx->uid;
	if (bpf_core_field_exists(ctx->oom_score_adj))
		ev->oom_score_adj = ctx->oom_score_adj;

	loupe_oom_find_memcg(ev);

	/* Rare and time-critical (user space reads the cgroup before it is
	 * removed): always wake the consumer. */
	bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
	loupe_count(LOUPE_CTR_EVENTS_EMITTED, 1);
	return 0;
}

#endif /* LOUPE_BPF_OOM_BPF_H_ */
