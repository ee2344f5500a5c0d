/* qwendesk chat page: dictation. The microphone button records with MediaRecorder (webm/opus in Chromium,
 * ogg/opus in Firefox, mp4/aac in Safari), sends the recording to POST /v1/audio/transcriptions with the
 * first speech model /v1/models lists, and puts the text into the message box for the user to send. */
(function () {
  "use strict";

  const MAX_SECONDS = 300; // the daemon accepts 10 min by default; dictation is short
  const BLOCKED = "The microphone is blocked for this page: allow it in the browser's site settings, then reload.";
  const qd = window.qd;

  let opts = null;
  let model = null; // the speech model (an entry of /v1/models)
  let using = null; // the one the recording in progress goes to
  let blocked = ""; // why the microphone cannot be used (permission), "" when it can
  let recorder = null;
  let chunks = [];
  let cancelled = false;
  let starting = false;
  let busy = false; // transcribing
  let timer = 0;
  let started = 0;

  /* The first speech model: one that transcribes ("transcriptions", or "transcribe"); "audio" alone may also
   * mean a chat model that hears, so one that cannot chat comes first. */
  function speechModel(models) {
    const usable = models.filter(function (m) { return m.state !== "error"; });
    const can = qd.api.can;
    return usable.find(function (m) { return can(m, "transcriptions") || can(m, "transcribe"); }) ||
      usable.find(function (m) { return can(m, "audio") && !can(m, "chat"); }) ||
      usable.find(function (m) { return can(m, "audio"); }) || null;
  }

  function unavailable() {
    if (!window.MediaRecorder || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return "Dictation needs a secure page: open the chat at http://127.0.0.1 or http://localhost.";
    }
    if (blocked) return blocked;
    if (!model) {
      return "No speech model to dictate with: get one with `qwendesk pull faster-whisper:base`, or put a " +
        "Whisper model folder (CTranslate2) into the models folder.";
    }
    return "";
  }

  function show() {
    const button = opts.button;
    const why = recorder ? "" : unavailable();
    // aria-disabled, not disabled: the button stays focusable and a click says why it cannot record.
    button.setAttribute("aria-disabled", String(!!why || busy));
    button.classList.toggle("off", !!why);
    button.classList.toggle("recording", !!recorder);
    button.classList.toggle("busy", busy);
    button.setAttribute("aria-pressed", String(!!recorder));
    button.setAttribute("aria-label", recorder ? "Stop recording" : "Dictate");
    button.title = recorder ? "Stop recording and transcribe" :
      why || "Dictate with " + model.id + " (click again to stop, Esc to discard)";
  }

  function extension(type) {
    if (/ogg/.test(type)) return "ogg";
    if (/mp4|aac|m4a/.test(type)) return "m4a";
    if (/wav/.test(type)) return "wav";
    return "webm";
  }

  function tick() {
    const seconds = Math.floor((Date.now() - started) / 1000);
    if (seconds >= MAX_SECONDS) stop(false);
    const clock = Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
    qd.say("Recording " + clock + " · click the microphone again to stop, Esc to discard", "recording");
  }

  async function start() {
    starting = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      const denied = err.name === "NotAllowedError" || err.name === "SecurityError";
      if (denied) blocked = BLOCKED;
      const why = denied ? BLOCKED : err.name === "NotFoundError" ? "No microphone found: connect one and try again."
        : "Cannot open the microphone: " + err.message;
      qd.say(why, "error");
      return;
    } finally {
      starting = false;
      show();
    }
    chunks = [];
    cancelled = false;
    const rec = new MediaRecorder(stream);
    rec.ondataavailable = function (event) { if (event.data && event.data.size) chunks.push(event.data); };
    rec.onstop = function () {
      stream.getTracks().forEach(function (t) { t.stop(); });
      finish(rec.mimeType);
    };
    recorder = rec;
    using = model;
    rec.start(1000);
    started = Date.now();
    timer = setInterval(tick, 500);
    tick();
    show();
  }

  /* Ends the recording; `discard`: nothing is transcribed. */
  function stop(discard) {
    if (!recorder || recorder.state === "inactive") return;
    cancelled = discard;
    recorder.stop();
  }

  async function finish(mimeType) {
    recorder = null;
    clearInterval(timer);
    const type = mimeType || (chunks[0] && chunks[0].type) || "audio/webm";
    const blob = new Blob(chunks, { type: type });
    chunks = [];
    if (cancelled || !blob.size) {
      qd.say(cancelled ? "Recording discarded." : "Nothing was recorded.", cancelled ? "" : "error");
      show();
      return;
    }
    busy = true;
    show();
    qd.say("Transcribing with " + using.id + "…");
    try {
      const form = new FormData();
      form.append("file", blob, "recording." + extension(type));
      form.append("model", using.id);
      const response = await qd.api.request("/v1/audio/transcriptions", { method: "POST", body: form });
      const text = ((await response.json()).text || "").trim();
      if (text) { insert(text); qd.say(""); } else qd.say("No speech was heard in the recording.", "error");
    } catch (err) {
      qd.say("Transcription failed: " + err.message, "error");
    } finally {
      busy = false;
      show();
    }
  }

  /* The text goes after what is already typed; the user reads it and sends it. */
  function insert(text) {
    const input = opts.input;
    input.value = input.value.trim() ? input.value.replace(/\s*$/, " ") + text : text;
    input.dispatchEvent(new Event("input", { bubbles: true })); // resizes the box
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  /* options: {button, input}. */
  function init(options) {
    opts = options;
    opts.button.addEventListener("click", function () {
      if (busy || starting) return;
      if (recorder) { stop(false); return; }
      const why = unavailable();
      if (why) { qd.say(why, "error"); return; }
      start();
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && recorder) stop(true);
    });
    if (navigator.permissions && navigator.permissions.query) {
      navigator.permissions.query({ name: "microphone" }).then(function (status) {
        const apply = function () { blocked = status.state === "denied" ? BLOCKED : ""; show(); };
        apply();
        status.onchange = apply;
      }, function () { /* the browser cannot tell before asking */ });
    }
    show();
  }

  qd.voice = {
    init: init,
    update: function (models) { model = speechModel(models); show(); },
    model: function () { return model; },
  };
})();
