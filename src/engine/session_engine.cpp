#include "engine/session_engine.h"

namespace kvstash::engine {

uint32_t SessionEngine::chunk() const { return static_cast<uint32_t>(s_.options().chunk); }

bool SessionEngine::resumes_anywhere() const {
  return s_.model().resume_kind() == ResumeKind::kAnyBoundary;
}

bool SessionEngine::fork_from(cache::KvEngine& src, uint32_t n) {
  auto* from = dynamic_cast<SessionEngine*>(&src);
  if (!from || !resumes_anywhere()) return false;
  s_.fork_from(from->s_, n);
  return true;
}

Payload SessionEngine::extract_kv(uint32_t begin, uint32_t end, BufferPool& pool) {
  return s_.extract_kv(static_cast<int>(begin), static_cast<int>(end), pool);
}

bool SessionEngine::prefill(const std::vector<cache::Token>& prompt,
                            const cache::PrefillPlan& plan) {
  PrefillOptions po;
  po.boundaries.assign(plan.boundaries.begin(), plan.boundaries.end());
  po.snapshot_at.assign(plan.snapshot_at.begin(), plan.snapshot_at.end());
  if (plan.on_snapshot)
    po.on_snapshot = [&](int pos) { plan.on_snapshot(static_cast<uint32_t>(pos)); };
  if (plan.on_progress) {
    po.on_progress = [&](int done, int total) {
      return plan.on_progress(static_cast<uint32_t>(done), static_cast<uint32_t>(total));
    };
  }
  return s_.prefill(prompt, po);
}

}  // namespace kvstash::engine
