// An OOM-kill event through the Pipeline: counted by kind and by the
// victim's pod (the pod list of this node names its container), on a fake
// /proc and cgroup tree (a real OOM kill is in tests/integration/oom_test.cc).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "agent/kubernetes.h"
#include "agent/pipeline.h"
#include "decoders/events.h"
#include "exporters/exporter.h"

namespace loupe {
namespace {

void Write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(PipelineOomTest, KillsAreCountedByKindAndPod) {
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("loupe-pipeline-oom-" + std::to_string(getpid()));
  const std::string container(64, 'e');
  const std::string cgroup = "/kubepods/burstable/pod74ba62da-1a3d-11e7-bb11-080027cb0e22/" +
                             container;
  // A v1 memory hierarchy with the container's cgroup, and the victim (a
  // zombie still showing its cgroup) in /proc.
  Write(root / "cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  Write(root / ("cgroup/memory" + cgroup + "/memory.limit_in_bytes"), "33554432\n");
  Write(root / ("cgroup/memory" + cgroup + "/memory.usage_in_bytes"), "33554432\n");
  Write(root / "proc/4002/comm", "leaky\n");
  Write(root / "proc/4002/cgroup", "4:memory:" + cgroup + "\n0::/\n");

  PodCache pods;
  PodMetadata pod;
  pod.namespace_name = "shop";
  pod.pod_name = "orders-7d4b9c-x2x7q";
  pod.pod_uid = "74ba62da-1a3d-11e7-bb11-080027cb0e22";
  pod.containers = {{"app", container}};
  pods.Apply(PodEventType::kAdded, pod);

  ProcessTable processes("h", [](uint32_t tgid, const std::string& comm) {
    ProcessInfo info;
    info.tgid = tgid;
    info.comm = comm;
    return info;
  });
  FanoutExporter exporters;
  PipelineOptions options;
  options.oom.proc_root = (root / "proc").string();
  options.oom.cgroup_root = (root / "cgroup").string();
  options.oom.realtime_offset_ns = 0;
  options.pods = &pods;
  Pipeline pipeline(options, processes, exporters, nullptr);

  OomEvent event;
  event.header.ts_ns = 3'000'000'000;
  event.header.tgid = 4002;
  event.header.tid = 4002;
  event.victim_pid = 4002;
  event.victim_comm = "leaky";
  event.anon_rss_kb = 30'000;
  event.kind = OomKind::kCgroup;
  event.trigger_comm = "leaky";
  const std::string raw = EncodeOomEvent(event);
  pipeline.OnRawEvent(std::span(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
  // One more whose cgroup is no container: counted without pod labels.
  event.victim_pid = 5000;
  event.kind = OomKind::kGlobal;
  const std::string global = EncodeOomEvent(event);
  pipeline.OnRawEvent(std::span(reinterpret_cast<const uint8_t*>(global.data()), global.size()));

  const PipelineStats stats = pipeline.stats();
  using Labels = std::array<std::string, 4>;
  EXPECT_EQ(stats.oom_kills, (std::map<Labels, uint64_t>{
                                 {Labels{"cgroup", "shop", "orders-7d4b9c-x2x7q", "app"}, 1},
                                 {Labels{"global", "", "", ""}, 1}}));
  EXPECT_EQ(stats.events_invalid, 0u);
  ASSERT_EQ(pipeline.oom_reporter().Recent().size(), 2u);
  EXPECT_EQ(pipeline.oom_reporter().Recent()[0].victim_cgroup, cgroup);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace loupe
