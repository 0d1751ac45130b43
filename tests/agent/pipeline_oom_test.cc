// An OOM-kill event through the Pipeline: published when the victim's exit
// is seen (or 2 s without it), counted by kind and by the victim's pod (the
// pod list of this node names its container), named in /oom, with the memory
// trend the sampler kept, and handed to the log exporter as a loupe.oom_kill
// record; on a fake /proc and cgroup tree (a real OOM kill is in
// tests/integration/oom_test.cc).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "agent/kubernetes.h"
#include "agent/pipeline.h"
#include "decoders/events.h"
#include "decoders/model/log_record.h"
#include "exporters/exporter.h"

namespace loupe {
namespace {

class Logs : public LogConsumer {
 public:
  void Consume(LogRecord&& record) override { records.push_back(std::move(record)); }
  std::vector<LogRecord> records;
};

void Feed(Pipeline& pipeline, const std::string& raw) {
  pipeline.OnRawEvent(std::span(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
}

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
  pod.deployment = "orders";
  pods.Apply(PodEventType::kAdded, pod);
  MemoryHistory history;
  MemorySample sample;
  sample.time_unix_ns = 1'000'000'000;
  sample.usage_bytes = 20u << 20;
  sample.limit_bytes = 32u << 20;
  history.Add(cgroup, sample);
  sample.time_unix_ns = 2'000'000'000;
  sample.usage_bytes = 30u << 20;
  history.Add(cgroup, sample);
  Logs logs;

  // As /proc would say: the first victim is known by its name.
  ProcessTable processes("h", [](uint32_t tgid, const std::string& comm) {
    ProcessInfo info;
    info.tgid = tgid;
    info.comm = tgid == 4002 ? "leaky" : comm;
    return info;
  });
  FanoutExporter exporters;
  PipelineOptions options;
  options.oom.proc_root = (root / "proc").string();
  options.oom.cgroup_root = (root / "cgroup").string();
  options.oom.realtime_offset_ns = 0;
  options.pods = &pods;
  options.logs = &logs;
  options.memory_history = &history;
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
  Feed(pipeline, EncodeOomEvent(event));
  // One more whose cgroup is no container: counted without pod labels.
  event.victim_pid = 5000;
  event.kind = OomKind::kGlobal;
  Feed(pipeline, EncodeOomEvent(event));
  // Investigated, not yet published: each waits for its victim's exit.
  EXPECT_TRUE(pipeline.oom_reporter().Recent().empty());
  EXPECT_TRUE(pipeline.stats().oom_kills.empty());
  ProcessEvent exit;
  exit.header.ts_ns = 3'100'000'000;
  exit.header.tgid = 4002;
  exit.header.tid = 4002;
  exit.kind = ProcessEventKind::kExit;
  Feed(pipeline, EncodeProcessEvent(exit));
  ASSERT_EQ(pipeline.oom_reporter().Recent().size(), 1u);
  ASSERT_EQ(logs.records.size(), 1u);
  // The second victim's exit never comes (outside --pid, say): published
  // after 2 s without it.
  pipeline.Tick(4'000'000'000);
  EXPECT_EQ(pipeline.oom_reporter().Recent().size(), 1u);
  pipeline.Tick(5'000'000'001);
  ASSERT_EQ(pipeline.oom_reporter().Recent().size(), 2u);
  ASSERT_EQ(logs.records.size(), 2u);

  const PipelineStats stats = pipeline.stats();
  using Labels = std::array<std::string, 4>;
  EXPECT_EQ(stats.oom_kills, (std::map<Labels, uint64_t>{
                                 {Labels{"cgroup", "shop", "orders-7d4b9c-x2x7q", "app"}, 1},
                                 {Labels{"global", "", "", ""}, 1}}));
  EXPECT_EQ(stats.events_invalid, 0u);
  ASSERT_EQ(pipeline.oom_reporter().Recent().size(), 2u);
  const OomKill first = pipeline.oom_reporter().Recent()[0];
  EXPECT_EQ(first.victim_cgroup, cgroup);
  EXPECT_EQ(first.service_name, "leaky") << "the process table's resource";
  EXPECT_EQ(first.container_id, container);
  EXPECT_EQ(first.k8s_namespace, "shop");
  EXPECT_EQ(first.k8s_pod, "orders-7d4b9c-x2x7q");
  EXPECT_EQ(first.k8s_container, "app");
  EXPECT_EQ(first.k8s_workload_kind, "deployment");
  EXPECT_EQ(first.k8s_workload, "orders");
  EXPECT_TRUE(first.exit_seen);
  EXPECT_EQ(first.requests_in_flight, 0u);
  ASSERT_EQ(first.memory_trend.size(), 2u);
  EXPECT_EQ(first.memory_trend[1].usage_bytes, 30u << 20);
  const std::string json = OomKillJson(first);
  EXPECT_NE(json.find("\"container\":{\"id\":\"" + container +
                      "\",\"k8s_namespace_name\":\"shop\",\"k8s_pod_name\":\"orders-7d4b9c-x2x7q\","
                      "\"k8s_container_name\":\"app\",\"k8s_workload_kind\":\"deployment\","
                      "\"k8s_workload\":\"orders\"}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"requests_in_flight\":0}"), std::string::npos) << json;
  EXPECT_NE(OomKillConsoleLine(first).find(" pod shop/orders-7d4b9c-x2x7q container app service leaky"),
            std::string::npos)
      << OomKillConsoleLine(first);

  const LogRecord& record = logs.records[0];
  EXPECT_EQ(record.event_name, "loupe.oom_kill");
  EXPECT_EQ(record.severity, Severity::kWarn);
  EXPECT_EQ(record.body, OomKillConsoleLine(first));
  EXPECT_EQ(record.time_unix_ns, 3'000'000'000u) << "the kill's time (realtime offset 0)";
  ASSERT_NE(record.resource, nullptr);
  EXPECT_EQ(record.resource->service_name(), "leaky");
  EXPECT_EQ(*record.attributes.FindInt("process.pid"), 4002);
  EXPECT_EQ(*record.attributes.FindString("k8s.pod.name"), "orders-7d4b9c-x2x7q");
  EXPECT_EQ(*record.attributes.FindString("k8s.deployment.name"), "orders");
  EXPECT_EQ(*record.attributes.FindInt("loupe.oom.cgroup.limit_bytes"), 33554432);
  EXPECT_EQ(*record.attributes.FindInt("loupe.oom.anon_rss_bytes"), 30'000 * 1024);
  EXPECT_EQ(*record.attributes.FindInt("loupe.oom.requests_in_flight"), 0);
  ASSERT_EQ(record.lists.size(), 1u) << "no other process left: no top processes";
  EXPECT_EQ(record.lists[0].key, "loupe.oom.memory_trend");
  ASSERT_EQ(record.lists[0].items.size(), 2u);
  EXPECT_EQ(*record.lists[0].items[0].FindInt("usage_bytes"), 20 << 20);
  // The unpublished one: no exit seen, so no requests_in_flight.
  const OomKill second = pipeline.oom_reporter().Recent()[1];
  EXPECT_FALSE(second.exit_seen);
  EXPECT_EQ(second.service_name, "") << "an unreadable process has no name";
  EXPECT_NE(OomKillJson(second).find("\"requests_in_flight\":null}"), std::string::npos);
  EXPECT_EQ(logs.records[1].attributes.Find("loupe.oom.requests_in_flight"), nullptr);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace loupe
