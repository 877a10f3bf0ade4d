// The N-API binding. One native thread per engine owns the engine (and, in the CUDA flavor, the
// CUDA context): JS calls enqueue jobs, the thread runs them one at a time, and completions come back
// to the JS thread through one thread-safe function, where they settle the job's promise.
//
//   JS thread                        engine thread
//   step(packed) ─ parse ─► queue ─► engine->step() ─► NonBlockingCall ─► resolve(result)
//
// Nothing here exits the process: every failure becomes a rejected promise or a thrown JS error.
#include <napi.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "seventy/engine.h"

namespace {

using namespace seventy;

const char* codeName(int code) {
  switch (code) {
    case kInvalidArgument: return "ENGINE_INVALID_ARGUMENT";
    case kIo: return "ENGINE_IO";
    case kOutOfMemory: return "ENGINE_OUT_OF_MEMORY";
    case kDevice: return "ENGINE_DEVICE";
    case kNoDevice: return "ENGINE_NO_DEVICE";
    case kUnsupported: return "ENGINE_UNSUPPORTED";
    case kClosed: return "ENGINE_CLOSED";
    default: return "ENGINE_ERROR";
  }
}

Napi::Value statusError(Napi::Env env, const Status& st) {
  Napi::Error e = Napi::Error::New(env, st.message);
  e.Set("code", Napi::String::New(env, codeName(st.code)));
  return e.Value();
}

// A unit of work for the engine thread: `run` executes there, `settle` back on the JS thread.
// A progress notification has no promise (it is made on the engine thread, where no N-API call is allowed).
struct Job {
  std::function<Status()> run;
  std::function<Napi::Value(Napi::Env)> result;  // called only when run() succeeded
  std::optional<Napi::Promise::Deferred> deferred;
  Status status;
  bool closesEngine = false;
  bool isProgress = false;
  LoadProgress progress;
  Job() = default;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

class NativeEngine;
void settleOnJsThread(Napi::Env env, Napi::Function, NativeEngine* self, Job* job);
using Tsfn = Napi::TypedThreadSafeFunction<NativeEngine, Job, settleOnJsThread>;

class NativeEngine : public Napi::ObjectWrap<NativeEngine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {InstanceMethod("load", &NativeEngine::Load), InstanceMethod("step", &NativeEngine::Step),
                        InstanceMethod("close", &NativeEngine::Close)});
  }

  explicit NativeEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeEngine>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "NativeEngine(options): options must be an object").ThrowAsJavaScriptException();
      return;
    }
    std::string err;
    if (!parseOptions(info[0].As<Napi::Object>(), opt_, err)) {
      Napi::TypeError::New(env, "NativeEngine options: " + err).ThrowAsJavaScriptException();
      return;
    }
    tsfn_ = Tsfn::New(env, "seventy-native-engine", 0, 1, this);
    tsfn_.Unref(env);
    thread_ = std::thread([this] { threadMain(); });
    started_ = true;
  }

  ~NativeEngine() override { shutdown(); }

  // Called on the JS thread for every finished job.
  void settle(Napi::Env env, Job* job) {
    if (job->isProgress) {
      if (!onProgress_.IsEmpty()) {
        Napi::Object p = Napi::Object::New(env);
        p.Set("bytesDone", Napi::Number::New(env, double(job->progress.bytesDone)));
        p.Set("bytesTotal", Napi::Number::New(env, double(job->progress.bytesTotal)));
        p.Set("file", Napi::String::New(env, job->progress.file));
        onProgress_.Call({p});
        if (env.IsExceptionPending()) env.GetAndClearPendingException();  // a throwing progress callback must not break loading
      }
      return;
    }
    if (!job->status.ok()) {
      job->deferred->Reject(statusError(env, job->status));
    } else {
      Napi::Value v = job->result ? job->result(env) : env.Undefined();
      if (env.IsExceptionPending()) job->deferred->Reject(env.GetAndClearPendingException().Value());
      else job->deferred->Resolve(v);
    }
    if (job->closesEngine) shutdown();
    if (--pending_ == 0) {
      if (started_) tsfn_.Unref(env);
      Unref();  // the JS object may be collected again
    }
  }

 private:
  // ---- JS methods ----
  Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && info[0].IsFunction()) onProgress_ = Napi::Persistent(info[0].As<Napi::Function>());
    auto job = std::make_unique<Job>(env);
    job->run = [this]() -> Status {
      std::unique_ptr<Engine> e;
      Status st = createEngine(opt_, e);
      if (!st.ok()) return st;
      auto lastSent = std::chrono::steady_clock::now() - std::chrono::seconds(1);
      st = e->load([this, &lastSent](const LoadProgress& p) {
        auto now = std::chrono::steady_clock::now();
        if (p.bytesDone < p.bytesTotal && now - lastSent < std::chrono::milliseconds(100)) return;
        lastSent = now;
        Job* pj = new Job();
        pj->isProgress = true;
        pj->progress = p;
        if (tsfn_.NonBlockingCall(pj) != napi_ok) delete pj;
      });
      if (!st.ok()) return st;
      engine_ = std::move(e);
      return Status::Ok();
    };
    job->result = [this](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("kind", Napi::String::New(env, engine_->kind()));
      o.Set("blockSize", Napi::Number::New(env, engine_->blockSize()));
      o.Set("numKvBlocks", Napi::Number::New(env, engine_->numKvBlocks()));
      o.Set("weightBytes", Napi::Number::New(env, double(engine_->weightBytes())));
      o.Set("kvCacheBytes", Napi::Number::New(env, double(engine_->kvCacheBytes())));
      return o;
    };
    return enqueue(env, std::move(job));
  }

  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto input = std::make_shared<StepInput>();
    std::string err;
    if (info.Length() < 1 || !info[0].IsObject() || !parseStep(info[0].As<Napi::Object>(), *input, err)) {
      Napi::TypeError::New(env, "step(packed): " + (err.empty() ? std::string("expected the packed batch object") : err))
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto output = std::make_shared<StepOutput>();
    auto job = std::make_unique<Job>(env);
    job->run = [this, input, output]() -> Status {
      if (!engine_) return errorStatus(kInvalidArgument, "step() before load() finished");
      Status st = takePreviousTokens(*input);
      if (st.ok()) st = engine_->step(*input, *output);
      rememberSampled(*input, *output, st.ok());
      return st;
    };
    job->result = [output](Napi::Env env) { return toJs(env, *output); };
    return enqueue(env, std::move(job));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto job = std::make_unique<Job>(env);
    job->run = [this]() -> Status {
      engine_.reset();  // frees device memory on the thread that owns the context
      return Status::Ok();
    };
    job->closesEngine = true;
    Napi::Value p = enqueue(env, std::move(job));
    closing_ = true;
    return p;
  }

  Napi::Value enqueue(Napi::Env env, std::unique_ptr<Job> job) {
    Napi::Promise promise = job->deferred->Promise();
    if (!started_ || closing_) {
      job->deferred->Reject(statusError(env, errorStatus(kClosed, "the native engine is closed")));
      return promise;
    }
    // While jobs are pending, keep the event loop alive and the JS object from being collected
    // (the engine thread and the completions point at this object).
    if (pending_++ == 0) {
      tsfn_.Ref(env);
      Ref();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(job.release());
    }
    cv_.notify_one();
    return promise;
  }

  // ---- engine thread ----
  // Steps run here in the order JS called step(), so a step JS built before the previous one settled
  // (the scheduler's overlap) takes its tokens from what that one sampled, already on the host.
  Status takePreviousTokens(StepInput& in) const {
    for (const SeqInput& s : in.seqs) {
      if (!s.tokenFromPreviousStep) continue;
      auto it = lastSampled_.find(s.seqId);
      if (it == lastSampled_.end()) {
        return errorStatus(kInvalidArgument, "seq " + std::to_string(s.seqId) + ": tokenFromPreviousStep, but the previous step sampled no token for it");
      }
      if (s.numTokens != 1 || s.tokenOffset < 0 || size_t(s.tokenOffset) >= in.tokens.size()) {
        return errorStatus(kInvalidArgument, "seq " + std::to_string(s.seqId) + ": tokenFromPreviousStep needs exactly one token");
      }
      in.tokens[s.tokenOffset] = it->second;
    }
    return Status::Ok();
  }

  // Only the engine's own samples: a returnLogits sequence's token is decided in JS (grammar masks).
  void rememberSampled(const StepInput& in, const StepOutput& out, bool ok) {
    lastSampled_.clear();
    if (!ok) return;
    std::unordered_map<int, bool> logitsOnly;
    for (const SeqInput& s : in.seqs) logitsOnly[s.seqId] = s.returnLogits;
    for (const SampledOutput& o : out.sampled) {
      if (o.tokenId >= 0 && !logitsOnly[o.seqId]) lastSampled_[o.seqId] = o.tokenId;
    }
  }

  void threadMain() {
    for (;;) {
      Job* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_ and nothing left
        job = queue_.front();
        queue_.pop_front();
      }
      try {
        job->status = job->run();
      } catch (const std::bad_alloc&) {
        job->status = errorStatus(kOutOfMemory, "out of host memory");
      } catch (const std::exception& e) {
        job->status = errorStatus(kDevice, std::string("native engine: ") + e.what());
      }
      if (tsfn_.NonBlockingCall(job) != napi_ok) delete job;  // the env is going away
    }
  }

  void shutdown() {
    if (!started_) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    engine_.reset();
    tsfn_.Release();
    started_ = false;
  }

  // ---- conversions ----
  // Reads a numeric field: a missing optional field leaves `out` as it is; a missing required one or
  // a non-number is an error message in `err`.
  template <typename T>
  static bool getNumber(Napi::Object o, const char* key, T& out, std::string& err, bool required) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) {
      if (required) err = std::string(key) + " is required";
      return !required;
    }
    if (!v.IsNumber()) {
      err = std::string(key) + " must be a number";
      return false;
    }
    if constexpr (std::is_same_v<T, int>) out = v.As<Napi::Number>().Int32Value();
    else out = static_cast<T>(v.As<Napi::Number>().DoubleValue());
    return true;
  }
  static bool getInt(Napi::Object o, const char* key, int& out, std::string& err, bool required = true) {
    return getNumber(o, key, out, err, required);
  }
  static bool getDouble(Napi::Object o, const char* key, double& out, std::string& err, bool required = true) {
    return getNumber(o, key, out, err, required);
  }

  static bool parseOptions(Napi::Object o, EngineOptions& opt, std::string& err) {
    Napi::Value cv = o.Get("config");
    if (!cv.IsObject()) {
      err = "config must be an object";
      return false;
    }
    Napi::Object c = cv.As<Napi::Object>();
    ModelConfig& m = opt.config;
    if (!getInt(c, "hiddenSize", m.hiddenSize, err) || !getInt(c, "intermediateSize", m.intermediateSize, err) ||
        !getInt(c, "numHiddenLayers", m.numLayers, err) || !getInt(c, "numAttentionHeads", m.numHeads, err) ||
        !getInt(c, "numKeyValueHeads", m.numKvHeads, err) || !getInt(c, "headDim", m.headDim, err) ||
        !getInt(c, "vocabSize", m.vocabSize, err) || !getDouble(c, "rmsNormEps", m.rmsNormEps, err) ||
        !getDouble(c, "ropeTheta", m.ropeTheta, err)) {
      err = "config." + err;
      return false;
    }
    m.tieWordEmbeddings = c.Get("tieWordEmbeddings").ToBoolean();
    Napi::Value rs = c.Get("ropeScaling");
    if (rs.IsObject()) {
      Napi::Object r = rs.As<Napi::Object>();
      m.rope.llama3 = true;
      if (!getDouble(r, "factor", m.rope.factor, err) || !getDouble(r, "lowFreqFactor", m.rope.lowFreqFactor, err) ||
          !getDouble(r, "highFreqFactor", m.rope.highFreqFactor, err) ||
          !getDouble(r, "originalMaxPositionEmbeddings", m.rope.originalMaxPositionEmbeddings, err)) {
        err = "config.ropeScaling." + err;
        return false;
      }
    }

    Napi::Value backend = o.Get("backend");
    opt.backend = backend.IsString() && backend.As<Napi::String>().Utf8Value() == "cuda" ? Backend::Cuda : Backend::Cpu;
    Napi::Value fmt = o.Get("loadFormat");
    opt.loadFormat = fmt.IsString() && fmt.As<Napi::String>().Utf8Value() == "dummy" ? LoadFormat::Dummy : LoadFormat::Safetensors;
    Napi::Value quant = o.Get("quantization");
    opt.quantization = quant.IsString() && quant.As<Napi::String>().Utf8Value() == "fp8" ? Quantization::Fp8 : Quantization::None;
    Napi::Value kvDtype = o.Get("kvCacheDtype");
    opt.kvCacheDtype = kvDtype.IsString() && kvDtype.As<Napi::String>().Utf8Value() == "fp8" ? KvCacheDtype::Fp8 : KvCacheDtype::Auto;
    Napi::Value embDev = o.Get("embeddingDevice");
    opt.embeddingDevice = embDev.IsString() && embDev.As<Napi::String>().Utf8Value() == "gpu" ? EmbeddingDevice::Gpu : EmbeddingDevice::Host;
    Napi::Value lmDtype = o.Get("lmHeadDtype");
    opt.lmHeadDtype = lmDtype.IsString() && lmDtype.As<Napi::String>().Utf8Value() == "fp8" ? LmHeadDtype::Fp8 : LmHeadDtype::Auto;
    double seed = 0;
    if (!getDouble(o, "dummySeed", seed, err, false)) return false;
    opt.dummySeed = uint64_t(int64_t(seed));
    if (!getInt(o, "blockSize", opt.blockSize, err, false) || !getInt(o, "numKvBlocks", opt.numKvBlocks, err, false) ||
        !getDouble(o, "gpuMemoryUtilization", opt.gpuMemoryUtilization, err, false) ||
        !getInt(o, "maxNumSeqs", opt.maxNumSeqs, err, false) ||
        !getInt(o, "maxNumBatchedTokens", opt.maxNumBatchedTokens, err, false) ||
        !getInt(o, "maxModelLen", opt.maxModelLen, err, false) ||
        !getInt(o, "numLayersOverride", opt.numLayersOverride, err, false)) {
      return false;
    }
    Napi::Value graphs = o.Get("cudaGraphs");
    if (graphs.IsBoolean()) opt.cudaGraphs = graphs.As<Napi::Boolean>().Value();

    Napi::Value tv = o.Get("tensors");
    if (tv.IsArray()) {
      Napi::Array arr = tv.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value ev = arr.Get(i);
        if (!ev.IsObject()) {
          err = "tensors[" + std::to_string(i) + "] must be an object";
          return false;
        }
        Napi::Object e = ev.As<Napi::Object>();
        TensorSource t;
        t.name = e.Get("name").ToString().Utf8Value();
        const std::string dt = e.Get("dtype").ToString().Utf8Value();
        if (dt == "BF16") t.dtype = DType::BF16;
        else if (dt == "F16") t.dtype = DType::F16;
        else if (dt == "F32") t.dtype = DType::F32;
        else if (dt == "F8_E4M3") t.dtype = DType::F8E4M3;
        else if (dt == "I32") t.dtype = DType::I32;
        else {
          err = "tensor " + t.name + " has unsupported dtype " + dt;
          return false;
        }
        t.file = e.Get("file").ToString().Utf8Value();
        double off = 0, len = 0;
        if (!getDouble(e, "offset", off, err) || !getDouble(e, "byteLength", len, err)) {
          err = "tensor " + t.name + ": " + err;
          return false;
        }
        t.offset = uint64_t(off);
        t.byteLength = uint64_t(len);
        Napi::Value sv = e.Get("shape");
        if (!sv.IsArray()) {
          err = "tensor " + t.name + ": shape must be an array";
          return false;
        }
        Napi::Array sa = sv.As<Napi::Array>();
        for (uint32_t j = 0; j < sa.Length(); j++) t.shape.push_back(int64_t(sa.Get(j).ToNumber().DoubleValue()));
        opt.tensors.push_back(std::move(t));
      }
    } else if (opt.loadFormat == LoadFormat::Safetensors) {
      err = "tensors must be an array (or loadFormat \"dummy\")";
      return false;
    }
    return true;
  }

  template <class T, class TA>
  static bool typedArray(Napi::Object o, const char* key, std::vector<T>& out, std::string& err) {
    Napi::Value v = o.Get(key);
    if (!v.IsTypedArray()) {
      err = std::string(key) + " must be a typed array";
      return false;
    }
    TA a = v.As<TA>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
    return true;
  }

  // The packed batch (see gpu-node/src/engine/native/pack.ts): flat typed arrays, one row per sequence.
  static constexpr int kMetaInts = 12;
  static constexpr int kParamDoubles = 8;

  static bool parseStep(Napi::Object o, StepInput& in, std::string& err) {
    std::vector<int32_t> meta;
    std::vector<double> params;
    if (!typedArray<int32_t, Napi::Int32Array>(o, "tokens", in.tokens, err) ||
        !typedArray<int32_t, Napi::Int32Array>(o, "blockTables", in.blockTables, err) ||
        !typedArray<int32_t, Napi::Int32Array>(o, "penaltyTokens", in.penaltyTokens, err) ||
        !typedArray<int32_t, Napi::Int32Array>(o, "seqMeta", meta, err) ||
        !typedArray<double, Napi::Float64Array>(o, "seqParams", params, err)) {
      return false;
    }
    const size_t n = meta.size() / kMetaInts;
    if (meta.size() != n * kMetaInts || params.size() != n * kParamDoubles) {
      err = "seqMeta/seqParams lengths disagree";
      return false;
    }
    in.seqs.resize(n);
    for (size_t i = 0; i < n; i++) {
      const int32_t* m = meta.data() + i * kMetaInts;
      const double* p = params.data() + i * kParamDoubles;
      SeqInput& s = in.seqs[i];
      s.seqId = m[0];
      s.tokenOffset = m[1];
      s.numTokens = m[2];
      s.startPos = m[3];
      s.blockOffset = m[4];
      s.numBlocks = m[5];
      s.sample = (m[6] & 1) != 0;
      s.returnLogits = (m[6] & 2) != 0;
      s.tokenFromPreviousStep = (m[6] & 4) != 0;
      s.sampling.topK = m[7];
      s.sampling.logprobs = m[8];
      s.penaltyOffset = m[9];
      s.promptLen = m[10];
      s.outputLen = m[11];
      s.sampling.temperature = p[0];
      s.sampling.topP = p[1];
      s.sampling.minP = p[2];
      s.sampling.presencePenalty = p[3];
      s.sampling.frequencyPenalty = p[4];
      s.sampling.repetitionPenalty = p[5];
      s.sampling.seed = int64_t(p[6]);
      s.sampling.outputIndex = int64_t(p[7]);
    }
    return true;
  }

  static Napi::Value toJs(Napi::Env env, const StepOutput& out) {
    const size_t n = out.sampled.size();
    size_t tops = 0;
    for (const SampledOutput& s : out.sampled) tops += s.topIds.size();
    Napi::Int32Array seqIds = Napi::Int32Array::New(env, n);
    Napi::Int32Array tokenIds = Napi::Int32Array::New(env, n);
    Napi::Float64Array logprobs = Napi::Float64Array::New(env, n);
    Napi::Int32Array topCounts = Napi::Int32Array::New(env, n);
    Napi::Int32Array topIds = Napi::Int32Array::New(env, tops);
    Napi::Float64Array topLogprobs = Napi::Float64Array::New(env, tops);
    Napi::Array logits = Napi::Array::New(env, n);
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
      const SampledOutput& s = out.sampled[i];
      seqIds[i] = s.seqId;
      tokenIds[i] = s.tokenId;
      logprobs[i] = s.hasLogprob ? s.logprob : std::nan("");
      topCounts[i] = s.hasLogprob ? int32_t(s.topIds.size()) : -1;
      for (size_t j = 0; j < s.topIds.size(); j++, t++) {
        topIds[t] = s.topIds[j];
        topLogprobs[t] = s.topLogprobs[j];
      }
      if (!s.logits.empty()) {
        Napi::Float32Array l = Napi::Float32Array::New(env, s.logits.size());
        std::copy(s.logits.begin(), s.logits.end(), l.Data());
        logits.Set(uint32_t(i), l);
      } else {
        logits.Set(uint32_t(i), env.Null());
      }
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("seqIds", seqIds);
    o.Set("tokenIds", tokenIds);
    o.Set("logprobs", logprobs);
    o.Set("topCounts", topCounts);
    o.Set("topIds", topIds);
    o.Set("topLogprobs", topLogprobs);
    o.Set("logits", logits);
    if (out.hostPrepareUs >= 0) o.Set("hostPrepareUs", Napi::Number::New(env, out.hostPrepareUs));
    if (out.hostReadbackUs >= 0) o.Set("hostReadbackUs", Napi::Number::New(env, out.hostReadbackUs));
    return o;
  }

  EngineOptions opt_;
  std::unordered_map<int, int> lastSampled_;  // seqId → token of the last step (engine thread only)
  std::unique_ptr<Engine> engine_;  // touched only on the engine thread (and after it joined)
  Tsfn tsfn_;
  Napi::FunctionReference onProgress_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stop_ = false;
  bool started_ = false;
  bool closing_ = false;
  int pending_ = 0;  // JS thread only
};

void settleOnJsThread(Napi::Env env, Napi::Function, NativeEngine* self, Job* job) {
  std::unique_ptr<Job> owned(job);
  if (env == nullptr || self == nullptr) return;  // the environment is shutting down
  self->settle(env, job);
}

Napi::Value ProbeDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceInfo d = probeDevice();
  Napi::Object o = Napi::Object::New(env);
  o.Set("usable", Napi::Boolean::New(env, d.usable));
  o.Set("reason", Napi::String::New(env, d.reason));
  o.Set("name", Napi::String::New(env, d.name));
  o.Set("computeCapability", Napi::Number::New(env, d.computeCapability));
  o.Set("multiprocessors", Napi::Number::New(env, d.multiprocessors));
  o.Set("totalMemory", Napi::Number::New(env, double(d.totalMemory)));
  o.Set("freeMemory", Napi::Number::New(env, double(d.freeMemory)));
  return o;
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("buildFlavor", Napi::String::New(env, buildFlavor()));
  exports.Set("probeDevice", Napi::Function::New(env, ProbeDevice, "probeDevice"));
  exports.Set("NativeEngine", NativeEngine::Init(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitAddon)
