// libcurl handles owned by std::unique_ptr, and libcurl's process-wide
// initialisation done once (it is not thread-safe). Shared by the OTLP/HTTP
// transport and the Kubernetes pod watcher.
#ifndef LOUPE_EXPORTERS_CURL_HANDLES_H_
#define LOUPE_EXPORTERS_CURL_HANDLES_H_

#include <curl/curl.h>

#include <memory>
#include <mutex>

namespace loupe {

struct CurlSlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistDeleter>;

struct CurlEasyDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;

// curl_global_init, once per process, before the first easy handle.
inline void CurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_CURL_HANDLES_H_
