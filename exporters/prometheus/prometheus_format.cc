#include "exporters/prometheus/prometheus_format.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "prometheus/text_serializer.h"

namespace loupe {

namespace {

bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

// The specification's unit table (OTLP unit -> Prometheus suffix word).
std::string_view UnitWord(std::string_view unit) {
  static constexpr std::pair<std::string_view, std::string_view> kUnits[] = {
      {"d", "days"},          {"h", "hours"},         {"min", "minutes"},    {"s", "seconds"},
      {"ms", "milliseconds"}, {"us", "microseconds"}, {"ns", "nanoseconds"}, {"By", "bytes"},
      {"KiBy", "kibibytes"},  {"MiBy", "mebibytes"},  {"GiBy", "gibibytes"}, {"TiBy", "tibibytes"},
      {"KBy", "kilobytes"},   {"MBy", "megabytes"},   {"GBy", "gigabytes"},  {"TBy", "terabytes"},
      {"m", "meters"},        {"V", "volts"},         {"A", "amperes"},      {"J", "joules"},
      {"W", "watts"},         {"g", "grams"},         {"Cel", "celsius"},    {"Hz", "hertz"},
      {"%", "percent"}};
  for (const auto& [otel, word] : kUnits) {
    if (unit == otel) return word;
  }
  return unit;
}

// "per" units: the denominator's word ("s" -> "second").
std::string_view PerUnitWord(std::string_view unit) {
  static constexpr std::pair<std::string_view, std::string_view> kPer[] = {
      {"s", "second"}, {"m", "minute"}, {"h", "hour"}, {"d", "day"},
      {"w", "week"},   {"mo", "month"}, {"y", "year"}};
  for (const auto& [otel, word] : kPer) {
    if (unit == otel) return word;
  }
  return unit;
}

// Replaces characters outside [a-zA-Z0-9_:] (metric names) or [a-zA-Z0-9_]
// (label names) with "_".
std::string ReplaceInvalid(std::string_view in, bool allow_colon) {
  std::string out(in);
  for (char& c : out) {
    if (!(IsAsciiAlpha(c) || IsAsciiDigit(c) || c == '_' || (allow_colon && c == ':'))) c = '_';
  }
  return out;
}

std::string CollapseUnderscores(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    if (c == '_' && !out.empty() && out.back() == '_') continue;
    out.push_back(c);
  }
  return out;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Unit text for the name: annotations in curly braces dropped, "1" is no
// unit, "X/Y" becomes "X_per_Y".
std::string UnitSuffix(std::string_view unit) {
  std::string plain;
  for (size_t i = 0; i < unit.size(); ++i) {
    if (unit[i] == '{') {
      const size_t close = unit.find('}', i);
      if (close == std::string_view::npos) break;
      i = close;
      continue;
    }
    plain.push_back(unit[i]);
  }
  if (plain.empty() || plain == "1") return "";
  const size_t slash = plain.find('/');
  std::string suffix;
  if (slash == std::string::npos) {
    suffix = std::string(UnitWord(plain));
  } else {
    const std::string_view num = std::string_view(plain).substr(0, slash);
    const std::string_view den = std::string_view(plain).substr(slash + 1);
    if (!num.empty()) suffix = std::string(UnitWord(num));
    if (!den.empty()) {
      if (!suffix.empty()) suffix += "_";
      suffix += "per_";
      suffix += std::string(PerUnitWord(den));
    }
  }
  return CollapseUnderscores(ReplaceInvalid(suffix, false));
}

// Replaces each invalid UTF-8 sequence with U+FFFD.
std::string ValidUtf8(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    size_t len = 0;
    uint32_t min = 0;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      min = 0x10000;
    }
    bool ok = len != 0 && i + len <= in.size();
    uint32_t cp = len == 0 ? 0 : (c & (0x7F >> len));
    for (size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(in[i + k]);
      if ((cc & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid.
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

// HELP text escaping of the exposition format (backslash and newline);
// prometheus-cpp 1.0 writes HELP verbatim.
std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : ValidUtf8(help)) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

using Labels = std::vector<prometheus::ClientMetric::Label>;

// Attribute key/value pairs -> labels sorted by name. Keys that sanitize to
// the same label name are merged, their values joined with ";" in order of
// the original keys (specification, "Metric Attributes").
Labels ToLabels(std::vector<std::pair<std::string, std::string>> pairs) {
  std::vector<std::tuple<std::string, std::string, std::string>> named;  // label, key, value
  named.reserve(pairs.size());
  for (auto& [key, value] : pairs) {
    named.emplace_back(PrometheusLabelName(key), std::move(key), std::move(value));
  }
  std::sort(named.begin(), named.end());
  Labels labels;
  labels.reserve(named.size());
  for (auto& [label, key, value] : named) {
    if (!labels.empty() && labels.back().name == label) {
      labels.back().value += ";" + value;
    } else {
      labels.push_back({label, std::move(value)});
    }
  }
  return labels;
}

void AppendAttributes(const Attributes& attributes,
                      std::vector<std::pair<std::string, std::string>>* out) {
  for (const Attribute& a : attributes.items()) {
    out->emplace_back(a.key, PrometheusLabelValue(a.value));
  }
}

// The resource attributes every series of a resource carries (see the
// header): the service identity, or the pid when the instance is unnamed.
std::vector<std::pair<std::string, std::string>> IdentityOf(const Resource* resource) {
  std::vector<std::pair<std::string, std::string>> out;
  if (resource == nullptr) return out;
  const Attributes& a = resource->attributes;
  for (std::string_view key : {"service.namespace", "service.name", "service.instance.id"}) {
    if (const AttributeValue* v = a.Find(key))
      out.emplace_back(std::string(key), PrometheusLabelValue(*v));
  }
  if (a.Find("service.instance.id") == nullptr) {
    if (const AttributeValue* pid = a.Find("process.pid")) {
      out.emplace_back("process.pid", PrometheusLabelValue(*pid));
    }
  }
  return out;
}

std::string SeriesKey(const Labels& labels) {
  std::string key;
  for (const auto& l : labels) {
    key += l.name;
    key.push_back('\0');
    key += l.value;
    key.push_back('\0');
  }
  return key;
}

struct FamilyBuilder {
  prometheus::MetricFamily family;
  absl::flat_hash_map<std::string, size_t> series;  // label set -> index in family.metric
};

class Builder {
 public:
  // The family `name`, created with `help`/`type` on first use; nullptr when
  // a family of that name exists with another type (its later entries are
  // left out rather than break the exposition).
  FamilyBuilder* Family(const std::string& name, std::string_view help,
                        prometheus::MetricType type) {
    auto [it, inserted] = families_.try_emplace(name);
    if (inserted) {
      it->second.family.name = name;
      it->second.family.help = EscapeHelp(help);
      it->second.family.type = type;
    } else if (it->second.family.type != type) {
      return nullptr;
    }
    return &it->second;
  }

  std::vector<prometheus::MetricFamily> Take() {
    std::vector<prometheus::MetricFamily> out;
    out.reserve(families_.size());
    for (auto& [name, fb] : families_) {
      if (!fb.family.metric.empty()) out.push_back(std::move(fb.family));
    }
    return out;
  }

 private:
  std::map<std::string, FamilyBuilder> families_;  // sorted by name
};

void AddHistogram(FamilyBuilder& fb, Labels labels, const HistogramPoint& p,
                  const std::vector<double>* bounds) {
  prometheus::ClientMetric::Histogram h;
  h.sample_count = p.count;
  h.sample_sum = p.sum;
  if (bounds != nullptr) {
    const size_t n = std::min(bounds->size(), p.bucket_counts.size());
    uint64_t cumulative = 0;
    h.bucket.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      cumulative += p.bucket_counts[i];
      h.bucket.push_back({cumulative, (*bounds)[i]});
    }
    // +Inf is written by the serializer as sample_count.
  }
  std::string key = SeriesKey(labels);
  auto [it, inserted] = fb.series.try_emplace(std::move(key), fb.family.metric.size());
  if (inserted) {
    prometheus::ClientMetric m;
    m.label = std::move(labels);
    m.histogram = std::move(h);
    fb.family.metric.push_back(std::move(m));
    return;
  }
  // Same labels as an earlier series: add up, when the buckets agree.
  prometheus::ClientMetric::Histogram& into = fb.family.metric[it->second].histogram;
  if (into.bucket.size() != h.bucket.size()) return;
  for (size_t i = 0; i < h.bucket.size(); ++i) {
    if (into.bucket[i].upper_bound != h.bucket[i].upper_bound) return;
  }
  into.sample_count += h.sample_count;
  into.sample_sum += h.sample_sum;
  for (size_t i = 0; i < h.bucket.size(); ++i) {
    into.bucket[i].cumulative_count += h.bucket[i].cumulative_count;
  }
}

// A counter (monotonic sum) or gauge (non-monotonic sum) sample; series
// with the same labels add up, as histograms do.
void AddNumber(FamilyBuilder& fb, Labels labels, double value, bool counter) {
  std::string key = SeriesKey(labels);
  auto [it, inserted] = fb.series.try_emplace(std::move(key), fb.family.metric.size());
  if (inserted) {
    prometheus::ClientMetric m;
    m.label = std::move(labels);
    if (counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    fb.family.metric.push_back(std::move(m));
    return;
  }
  prometheus::ClientMetric& into = fb.family.metric[it->second];
  if (counter) {
    into.counter.value += value;
  } else {
    into.gauge.value += value;
  }
}

}  // namespace

std::string PrometheusMetricName(std::string_view name, std::string_view unit, bool counter) {
  std::string out = CollapseUnderscores(ReplaceInvalid(name, true));
  // (Not out.insert(0, "_"): GCC 12 -O3 flags it with a false -Wrestrict.)
  if (out.empty() || IsAsciiDigit(out[0])) out = "_" + out;
  const std::string suffix = UnitSuffix(unit);
  if (!suffix.empty() && !EndsWith(out, "_" + suffix) && out != suffix) {
    if (out.back() != '_') out += "_";
    out += suffix;
  }
  if (counter && !EndsWith(out, "_total")) {
    if (out.back() != '_') out += "_";
    out += "total";
  }
  return out;
}

std::string PrometheusLabelName(std::string_view key) {
  std::string out = ReplaceInvalid(key, false);
  if (out.empty()) return "key_";
  if (IsAsciiDigit(out[0])) return "key_" + out;
  if (out.size() >= 2 && out[0] == '_' && out[1] == '_') return "key" + out;
  return out;
}

std::string PrometheusLabelValue(const AttributeValue& value) {
  if (const auto* s = std::get_if<std::string>(&value)) return ValidUtf8(*s);
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  const double d = std::get<double>(value);
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), d);
  return std::string(buf, result.ptr);
}

std::vector<prometheus::MetricFamily> ToMetricFamilies(const MetricsSnapshot& snapshot,
                                                       const std::vector<SelfMetric>& self) {
  Builder builder;
  for (const ResourceMetrics& rm : snapshot.resources) {
    // target_info: every resource attribute as a label, value 1.
    if (rm.resource != nullptr && !rm.resource->attributes.empty()) {
      std::vector<std::pair<std::string, std::string>> pairs;
      AppendAttributes(rm.resource->attributes, &pairs);
      FamilyBuilder* fb =
          builder.Family("target_info", "Target metadata", prometheus::MetricType::Gauge);
      Labels labels = ToLabels(std::move(pairs));
      std::string key = SeriesKey(labels);
      if (fb != nullptr &&
          fb->series.try_emplace(std::move(key), fb->family.metric.size()).second) {
        prometheus::ClientMetric m;
        m.label = std::move(labels);
        m.gauge.value = 1;
        fb->family.metric.push_back(std::move(m));
      }
    }
    const auto identity = IdentityOf(rm.resource.get());
    for (const MetricData& data : rm.metrics) {
      if (data.temporality != Temporality::kCumulative) continue;
      if (data.type == MetricType::kSum) {
        // Monotonic cumulative sums are counters (named with _total), other
        // sums gauges (specification, "Sums").
        const bool counter = data.monotonic;
        FamilyBuilder* fb = builder.Family(
            PrometheusMetricName(data.name, data.unit, counter), data.description,
            counter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge);
        if (fb == nullptr) continue;
        for (const SumPoint& p : data.sum_points) {
          std::vector<std::pair<std::string, std::string>> pairs = identity;
          AppendAttributes(p.attributes, &pairs);
          AddNumber(*fb, ToLabels(std::move(pairs)), p.value, counter);
        }
        continue;
      }
      FamilyBuilder* fb = builder.Family(PrometheusMetricName(data.name, data.unit),
                                         data.description, prometheus::MetricType::Histogram);
      if (fb == nullptr) continue;
      for (const HistogramPoint& p : data.points) {
        std::vector<std::pair<std::string, std::string>> pairs = identity;
        AppendAttributes(p.attributes, &pairs);
        AddHistogram(*fb, ToLabels(std::move(pairs)), p, data.bounds.get());
      }
    }
  }
  for (const SelfMetric& s : self) {
    const bool counter = s.type == SelfMetric::Type::kCounter;
    FamilyBuilder* fb =
        builder.Family(PrometheusMetricName(s.name, ""), s.help,
                       counter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge);
    if (fb == nullptr) continue;
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& [k, v] : s.labels) pairs.emplace_back(k, ValidUtf8(v));
    Labels labels = ToLabels(std::move(pairs));
    std::string key = SeriesKey(labels);
    auto [it, inserted] = fb->series.try_emplace(std::move(key), fb->family.metric.size());
    if (!inserted) continue;  // a repeated series would make the scrape fail
    prometheus::ClientMetric m;
    m.label = std::move(labels);
    if (counter) {
      m.counter.value = s.value;
    } else {
      m.gauge.value = s.value;
    }
    fb->family.metric.push_back(std::move(m));
  }
  return builder.Take();
}

std::string RenderPrometheusText(const MetricsSnapshot& snapshot,
                                 const std::vector<SelfMetric>& self) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, ToMetricFamilies(snapshot, self));
  return out.str();
}

}  // namespace loupe
