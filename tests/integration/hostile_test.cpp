// Hostile clients against one running `kvstash serve`: malformed and abusive requests on every
// endpoint. Each gets a 4xx/413/503 with a message or is served; the server stays up (health
// checked after each), its memory stays bounded, and the live state it held before them is
// still stored at shutdown and restored by the next server.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "http_helpers.h"
#include "server_process.h"
#include "temp_dir.h"
#include "test_models.h"

using namespace kvstash::fixtures;
using nlohmann::json;

namespace {

constexpr size_t kBodyLimit = 16u << 20;

// One connection that writes raw bytes and reads what comes back.
class Raw {
 public:
  explicit Raw(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) close_now();
  }
  ~Raw() { close_now(); }
  // False once the server closed the connection (a refused write).
  bool send(const std::string& bytes) {
    size_t done = 0;
    while (fd_ >= 0 && done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }
  // Everything the server sends until it closes, `quiet_ms` pass without a byte, or a whole
  // response (headers and Content-Length bytes) is in.
  std::string read(int quiet_ms = 30000, const std::string& until = "") {
    std::string got;
    char buf[65536];
    while (fd_ >= 0) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, quiet_ms) <= 0) break;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
      if (complete(got) || (!until.empty() && got.find(until) != std::string::npos)) break;
    }
    return got;
  }
  void close_now() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  static bool complete(const std::string& r) {
    const size_t end = r.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    const size_t cl = r.find("Content-Length: ");
    if (cl == std::string::npos || cl > end) return false;
    return r.size() >= end + 4 + std::stoul(r.substr(cl + 16));
  }
  int fd_ = -1;
};

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

std::string body_of(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

std::string head(const std::string& method, const std::string& path,
                 const std::vector<std::string>& headers) {
  std::string h = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& x : headers) h += x + "\r\n";
  return h + "\r\n";
}

std::string request(const std::string& path, const std::string& body,
                    std::vector<std::string> headers = {}) {
  headers.push_back("Content-Length: " + std::to_string(body.size()));
  bool typed = false;
  for (const auto& h : headers) typed = typed || h.rfind("Content-Type", 0) == 0;
  if (!typed) headers.push_back("Content-Type: application/json");
  return head("POST", path, headers) + body;
}

std::string chunked(const std::string& path, const std::string& body) {
  std::string out =
      head("POST", path, {"Content-Type: application/json", "Transfer-Encoding: chunked"});
  for (size_t i = 0; i < body.size(); i += 65536) {
    const std::string part = body.substr(i, 65536);
    char len[32];
    std::snprintf(len, sizeof len, "%zx\r\n", part.size());
    out += len + part + "\r\n";
  }
  return out + "0\r\n\r\n";
}

std::string gzip(const std::string& data) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string chat(const json& extra,
                 const json& msgs = json::array({{{"role", "user"}, {"content", "hi"}}})) {
  json b = {{"messages", msgs}, {"max_tokens", 2}, {"temperature", 0}};
  if (extra.is_object()) b.update(extra);
  return b.dump();
}

json many_messages(int n) {
  json m = json::array();
  for (int i = 0; i < n; ++i) {
    m.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", "w" + std::to_string(i)}});
  }
  if (n % 2 == 0) m.push_back({{"role", "user"}, {"content", "end"}});
  return m;
}

// About 6k tokens (a slot holds 8k here): an agent's turn with a long tool result.
json long_prompt_messages() {
  json m = agent(3, 2);
  std::string out;
  for (int i = 0; i < 600; ++i) out += "row " + std::to_string(i) + " ok\n";
  m.push_back({{"role", "assistant"}, {"content", "reading"}});
  m.push_back({{"role", "user"}, {"content", out}});
  return m;
}

size_t rss_kib(int pid, const char* field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0) return std::stoul(line.substr(std::strlen(field)));
  }
  return 0;
}

// A case: what to send, and the statuses that are a right answer (0: the server closed the
// connection without one, as for a request it cannot even read).
struct Case {
  std::string name;
  std::function<std::string(int port)> run;  // returns the raw response
  std::set<int> ok;
};

std::function<std::string(int)> send_raw(std::string bytes, int quiet_ms = 60000) {
  return [bytes = std::move(bytes), quiet_ms](int port) {
    Raw c(port);
    c.send(bytes);
    return c.read(quiet_ms);
  };
}

std::function<std::string(int)> post_json(const std::string& path, std::string body) {
  return send_raw(request(path, std::move(body)));
}

std::vector<Case> cases() {
  const std::string chatp = "/v1/chat/completions";
  std::vector<Case> c;
  auto add = [&](std::string name, std::function<std::string(int)> run, std::set<int> ok) {
    c.push_back({std::move(name), std::move(run), std::move(ok)});
  };
  // Nesting: every place a client can put JSON.
  const json user = {{"role", "user"}, {"content", "hi"}};
  add("deep field in a message",
      post_json(chatp,
                R"({"messages":[{"role":"user","content":"hi","x":)" + nested(200000) + "}]}"),
      {400});
  add("deep top-level array", post_json(chatp, nested(500000)), {400});
  add("deep tool schema",
      post_json(chatp, R"({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":)"
                       R"("function","function":{"name":"f","parameters":{"x":)" +
                           nested(100000) + "}}}]}"),
      {400});
  {
    std::string schema = R"({"type":"string"})";
    for (int i = 0; i < 60000; ++i) schema = R"({"type":"array","items":)" + schema + "}";
    add("json_schema with 60000 nested items",
        post_json(chatp, R"({"messages":[{"role":"user","content":"hi"}],"response_format":)"
                         R"({"type":"json_schema","json_schema":{"schema":)" +
                             schema + "}}}"),
        {400});
    add("completions json_schema bomb",
        post_json("/v1/completions",
                  R"({"prompt":"a","max_tokens":1,"json_schema":)" + schema + "}"),
        {400});
  }
  add("anthropic deep content",
      post_json("/v1/messages", R"({"model":"m","max_tokens":2,"messages":[{"role":"user",)"
                                R"("content":[{"type":"text","text":"a","x":)" +
                                    nested(100000) + "}]}]}"),
      {400});
  add("responses deep input",
      post_json("/v1/responses", R"({"model":"m","input":)" + nested(100000) + "}"), {400});
  add("tokenize deep", post_json("/tokenize", R"({"content":"a","x":)" + nested(200000) + "}"),
      {400});
  // Grammars.
  add("grammar nested 100000 deep",
      post_json("/v1/completions", json{{"prompt", "a"},
                                        {"max_tokens", 1},
                                        {"grammar", "root ::= " + std::string(100000, '(') +
                                                        "\"a\"" + std::string(100000, ')')}}
                                       .dump()),
      {400});
  add("grammar of 1 MB",
      post_json("/v1/completions",
                json{{"prompt", "a"},
                     {"max_tokens", 1},
                     {"grammar", "root ::= \"" + std::string(1 << 20, 'a') + "\""}}
                    .dump()),
      {400});
  add("grammar that does not parse",
      post_json("/completion", json{{"prompt", "a"}, {"grammar", "root ::= ((("}}.dump()), {400});
  add("chat grammar bomb",
      post_json(chatp, chat({{"grammar", "root ::= " + std::string(50000, '(') + "\"a\"" +
                                             std::string(50000, ')')}})),
      {400});
  // Sizes and counts.
  add("body over the limit with Content-Length",
      post_json(chatp, chat({{"pad", std::string(kBodyLimit + 1000, 'x')}})), {413});
  add("body over the limit, chunked",
      send_raw(chunked(chatp, chat({{"pad", std::string(kBodyLimit + 1000, 'x')}}))), {413});
  add("gzip body inflating past the limit",
      send_raw(request(chatp, gzip(chat({{"pad", std::string(64u << 20, 'x')}})),
                       {"Content-Encoding: gzip"})),
      {413});
  add("gzip body that is not gzip",
      send_raw(request(chatp, "not gzip at all", {"Content-Encoding: gzip"})), {400});
  add("Content-Length larger than the body sent",
      send_raw(request(chatp, "{}").substr(0, 80), 8000), {0, 400});
  add("header of 64 KB", send_raw(head("GET", "/health", {"X-Big: " + std::string(64 << 10, 'h')})),
      {0, 400, 431});
  add("5000 messages (over --max-messages)", post_json(chatp, chat({}, many_messages(5000))),
      {400});
  add("3000 messages (over the context)", post_json(chatp, chat({}, many_messages(3000))), {400});
  {
    json tools = json::array();
    for (int i = 0; i < 10000; ++i) {
      tools.push_back(
          {{"type", "function"},
           {"function", {{"name", "t" + std::to_string(i)}, {"parameters", json::object()}}}});
    }
    add("10000 tools", post_json(chatp, chat({{"tools", tools}})), {400});
  }
  {
    json lb = json::object();
    for (int i = 0; i < 1000000; ++i) lb[std::to_string(i)] = 1;
    add("logit_bias with 1M entries", post_json(chatp, chat({{"logit_bias", lb}})), {400});
    std::string arr = "[";
    for (int i = 0; i < 1000000; ++i) arr += (i ? ",[1,1]" : "[1,1]");
    arr += "]";
    add("logit_bias array with 1M entries",
        post_json("/completion", R"({"prompt":"a","n_predict":1,"logit_bias":)" + arr + "}"),
        {400});
  }
  add("n_probs beyond the vocabulary",
      post_json("/completion", R"({"prompt":"a","n_predict":1,"n_probs":1000000})"), {400});
  add("top_logprobs of 1000", post_json(chatp, chat({{"logprobs", true}, {"top_logprobs", 1000}})),
      {400});
  add("stop string of 1 MB", post_json(chatp, chat({{"stop", std::string(1 << 20, 's')}})), {400});
  add("anthropic stop_sequences of 1 MB",
      post_json("/v1/messages", json{{"model", "m"},
                                     {"max_tokens", 2},
                                     {"stop_sequences", {std::string(1 << 20, 's')}},
                                     {"messages", {user}}}
                                    .dump()),
      {400});
  add("cache_salt of 1 MB", post_json(chatp, chat({{"cache_salt", std::string(1 << 20, 'k')}})),
      {400});
  add("prompt of 100000 token ids",
      post_json("/v1/completions",
                json{{"prompt", std::vector<int>(100000, 11)}, {"max_tokens", 1}}.dump()),
      {400});
  add("token id beyond the vocabulary",
      post_json("/v1/completions", R"({"prompt":[1,2,999999999],"max_tokens":1})"), {400});
  add("detokenize of huge ids", post_json("/detokenize", R"({"tokens":[-1,4294967296]})"), {400});
  // Numbers, types, encodings.
  add("giant number", post_json(chatp, chat({}).replace(chat({}).find("2"), 1, "1e400")), {400});
  add("giant integer",
      post_json(chatp, R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":)"
                       R"(123456789012345678901234567890})"),
      {400});
  add("negative max_tokens", post_json(chatp, chat({{"max_tokens", -5}})), {400});
  add("temperature as a string", post_json(chatp, chat({{"temperature", "hot"}})), {400});
  add("messages as a string", post_json(chatp, R"({"messages":"hi"})"), {400});
  add("message without role", post_json(chatp, R"({"messages":[{"content":"hi"}]})"), {400});
  add("duplicate keys",
      post_json(chatp, R"({"messages":[{"role":"user","content":"a"}],"messages":[{"role":"user",)"
                       R"("content":"b"}],"max_tokens":2})"),
      {200, 400});
  add("invalid UTF-8",
      post_json(chatp, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}"), {400});
  add("NUL byte in the body", post_json(chatp, std::string("{\"messages\":\0[]}", 15)), {400});
  add("escaped NUL in content",
      post_json(chatp, chat({}, {{{"role", "user"}, {"content", std::string("a\0b", 3)}}})),
      {200, 400});
  add("truncated JSON", post_json(chatp, R"({"messages":[{"role":"user","con)"), {400});
  add("empty body", post_json(chatp, ""), {400});
  add("body null", post_json(chatp, "null"), {400});
  add("body an array", post_json(chatp, "[1,2,3]"), {400});
  add("responses input of wrong types", post_json("/v1/responses", R"({"input":[1,true,null]})"),
      {400});
  add("anthropic image block",
      post_json("/v1/messages", R"({"model":"m","max_tokens":2,"messages":[{"role":"user",)"
                                R"("content":[{"type":"image","source":{}}]}]})"),
      {400});
  // Transport.
  add("text/plain body (a web page's)",
      send_raw(request(chatp, chat({}), {"Content-Type: text/plain"})), {415});
  add("form body",
      send_raw(request(chatp, chat({}), {"Content-Type: application/x-www-form-urlencoded"})),
      {413, 415});
  add("foreign Host (DNS rebinding)",
      send_raw("GET /props HTTP/1.1\r\nHost: attacker.example:8080\r\n\r\n"), {403});
  add("foreign Origin", send_raw(request(chatp, chat({}), {"Origin: https://attacker.example"})),
      {403});
  add("unknown endpoint", post_json("/v1/nothing", "{}"), {404});
  add("GET on a POST endpoint", send_raw(head("GET", chatp, {})), {404, 405});
  add("garbage request line", send_raw("\x16\x03\x01 hello\r\n\r\n"), {0, 400});
  add("slowloris headers",
      [](int port) {
        Raw r(port);
        const std::string h = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ";
        for (size_t i = 0; i < h.size(); i += 4) {
          if (!r.send(h.substr(i, 4))) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        for (int i = 0; i < 8 && r.send("a"); ++i)
          std::this_thread::sleep_for(std::chrono::seconds(1));
        return r.read(8000);
      },
      {0, 400, 408});
  // Clients that leave while their request runs (streamed or not) and mid-stream.
  const std::string long_chat =
      chat({{"max_tokens", 100000}, {"logit_bias", {{"151645", false}, {"151643", false}}}},
           long_prompt_messages());
  add("client leaves mid-request, not streamed",
      [long_chat](int port) {
        Raw r(port);
        r.send(request("/v1/chat/completions", long_chat));
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        return std::string();
      },
      {0});
  add("client leaves mid-request, streamed",
      [long_chat](int port) {
        Raw r(port);
        json b = json::parse(long_chat);
        b["stream"] = true;
        r.send(request("/v1/chat/completions", b.dump()));
        r.read(1000, "data:");
        return std::string();
      },
      {0});
  add("client leaves mid-stream",
      [](int port) {
        Raw r(port);
        r.send(request("/v1/chat/completions", chat({{"stream", true}, {"max_tokens", 200}})));
        r.read(5000, "data:");
        return std::string();
      },
      {0});
  return c;
}

}  // namespace

TEST(Hostile, EveryRequestIsAnsweredOrRefusedAndNothingIsLost) {
  TempDir dir;
  const std::string model = model_path("tiny");
  auto args = server_args(model, dir.path + "/cache",
                          {"--max-request-bytes", std::to_string(kBodyLimit), "--parallel", "2"});
  // A conversation whose live state the server holds before the hostile requests.
  const json first = agent(7, 3);
  std::string first_answer;
  size_t rss_before = 0, peak = 0;
  int n_cases = 0;
  {
    ServerProcess srv(args);
    const Reply r = post(srv.port(), "/v1/chat/completions", chat_body(first, 4));
    ASSERT_EQ(r.status, 200) << r.raw;
    first_answer = content(r);
    rss_before = rss_kib(srv.pid(), "VmRSS:");
    for (const Case& k : cases()) {
      SCOPED_TRACE(k.name);
      const std::string resp = k.run(srv.port());
      const int status = status_of(resp);
      EXPECT_TRUE(k.ok.count(status)) << "status " << status << ": " << resp.substr(0, 300);
      // A message that says what is wrong (a 413 sent while the client still writes may be cut
      // short by the connection's reset: its status line is the answer).
      const bool cut = status == 413 && !json::accept(body_of(resp));
      if (status >= 400 && !cut) {
        const json e = json::parse(body_of(resp), nullptr, false);
        const json msg = !e.is_object() ? json()
                         : e.contains("error") && e["error"].is_object()
                             ? e["error"]["message"]
                             : e.value("message", json());
        EXPECT_TRUE(msg.is_string() && msg.get<std::string>().size() > 10) << resp.substr(0, 300);
      }
      ASSERT_TRUE(srv.running()) << srv.log();
      ASSERT_EQ(get(srv.port(), "/health").status, 200);
      ++n_cases;
    }
    peak = rss_kib(srv.pid(), "VmHWM:");
    EXPECT_EQ(srv.stop(SIGTERM), 0) << srv.log();
    // The clients that left cancelled their requests, streamed or not (while rendered, during
    // prefill or decoding: whichever they left in).
    const std::string log = srv.log();
    size_t cancelled = 0;
    for (size_t at = 0; (at = log.find(" cancelled ", at)) != std::string::npos; ++at) ++cancelled;
    EXPECT_GE(cancelled, 2u) << log;
  }
  std::printf("hostile cases: %d; server RSS %zu MiB before, peak %zu MiB\n", n_cases,
              rss_before / 1024, peak / 1024);
  EXPECT_GE(n_cases, 40);
  // Bounded: the largest body is read once (16 MiB) and parsed once.
  EXPECT_LT(peak, rss_before + 1536 * 1024) << "peak RSS " << peak << " KiB";
  // The state held before them was stored: a new server restores it.
  ServerProcess again(args);
  const Reply r = post(again.port(), "/v1/chat/completions", chat_body(first, 4));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_GT(cached(r), 0) << again.log();
  EXPECT_EQ(content(r), first_answer);
}

// A full queue answers 503 with Retry-After, streamed or not, and serves the others; a client
// that leaves while queued costs its slot nothing (no restore, no store).
TEST(Hostile, AFullQueueAnswers503WithRetryAfter) {
  TempDir dir;
  ServerProcess srv(server_args(model_path("tiny"), dir.path + "/cache",
                                {"--parallel", "1", "--max-queue", "2"}));
  Raw busy(srv.port());  // holds the slot: a long stream
  busy.send(request("/v1/chat/completions",
                    chat({{"stream", true},
                          {"max_tokens", 10000},
                          {"logit_bias", {{"151645", false}, {"151643", false}}}})));
  ASSERT_NE(busy.read(10000, "data:").find("200 OK"), std::string::npos);
  auto waiting = std::async(std::launch::async,
                            [&] { return post(srv.port(), "/v1/chat/completions", chat({})); });
  Raw leaver(srv.port());  // queued, then gone
  leaver.send(request("/v1/chat/completions", chat({{"stream", true}}, agent(9, 2))));
  leaver.read(5000, "\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (const bool stream : {false, true}) {
    Raw c(srv.port());
    c.send(request("/v1/chat/completions", chat({{"stream", stream}})));
    const std::string resp = c.read(10000);
    EXPECT_EQ(status_of(resp), 503) << resp;
    EXPECT_NE(resp.find("Retry-After: "), std::string::npos) << resp;
    EXPECT_NE(resp.find("--max-queue"), std::string::npos) << resp;
  }
  leaver.close_now();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the pump notices
  busy.close_now();  // the slot frees: the waiting request is served
  EXPECT_EQ(waiting.get().status, 200);
  for (int i = 0; i < 100 && srv.log().find("cancelled before it started") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string log = srv.log();
  EXPECT_NE(log.find("cancelled before it started"), std::string::npos) << log;
  EXPECT_EQ(log.find("kv cache hit"), std::string::npos) << "nothing restored for nobody";
}
