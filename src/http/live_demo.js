// Herald's live demo page (src/http/live_demo.rs, docs/live.md): follows the topics a live
// token grants over Server-Sent Events. The token and the last event id shown stay in this
// browser (localStorage), so a reload resumes after what was shown.
"use strict";

(function () {
  const TOKEN = "herald.live.token";
  const LAST = "herald.live.last";
  const $ = (id) => document.getElementById(id);
  let source = null;
  let waiting = 0;

  function status(text, kind) {
    $("status").textContent = text;
    $("status").className = kind || "note";
  }

  function note(text) {
    const li = document.createElement("li");
    li.className = "note";
    li.textContent = text;
    $("messages").appendChild(li);
  }

  function show(update, id) {
    const li = document.createElement("li");
    li.className = "update";
    li.dataset.id = id;
    const head = document.createElement("div");
    const when = waiting > 0 ? "while you were away" : "live";
    if (waiting > 0) {
      waiting -= 1;
      li.classList.add("missed");
    }
    head.textContent = update.topic + " · #" + update.sequence + " · " + when;
    head.className = "note";
    const body = document.createElement("pre");
    const text = update.encoding === "base64" ? "(" + update.content_type + ", base64) " + update.body : update.body;
    body.textContent = text.length > 4000 ? text.slice(0, 4000) + "…" : text;
    li.appendChild(head);
    li.appendChild(body);
    $("messages").appendChild(li);
  }

  // EventSource hides why a connection was refused; ask once with fetch to say why.
  async function explain(url) {
    const abort = new AbortController();
    try {
      const res = await fetch(url, { signal: abort.signal });
      if (!res.ok) {
        const body = await res.json().catch(() => ({ message: "HTTP " + res.status }));
        status("Refused: " + body.message, "bad");
        source.close();
        return;
      }
      status("Connection lost; reconnecting…", "note");
    } catch (_) {
      status("The hub cannot be reached; retrying…", "bad");
    } finally {
      abort.abort();
    }
  }

  function connect(token) {
    if (source) source.close();
    let url = "/live/events?token=" + encodeURIComponent(token);
    const last = localStorage.getItem(LAST);
    if (last) url += "&last_event_id=" + encodeURIComponent(last);
    status("Connecting…");
    source = new EventSource(url);
    source.addEventListener("ready", (e) => {
      const d = JSON.parse(e.data);
      waiting = d.backlog || 0;
      status("Following " + d.topics.join(", ") + " as " + d.subscriber +
        (waiting ? " — " + waiting + " update(s) arrived while you were away" : ""), "good");
    });
    source.addEventListener("dropped", (e) => {
      note(JSON.parse(e.data).dropped + " older update(s) were dropped before you saw them.");
    });
    source.addEventListener("update", (e) => {
      show(JSON.parse(e.data), e.lastEventId);
      localStorage.setItem(LAST, e.lastEventId);
    });
    source.addEventListener("closed", (e) => {
      status("Closed by the hub: " + JSON.parse(e.data).message, "bad");
      source.close();
    });
    source.onerror = () => explain(url);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("connect").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (!token) return;
      if (localStorage.getItem(TOKEN) !== token) localStorage.removeItem(LAST);
      localStorage.setItem(TOKEN, token);
      $("messages").replaceChildren();
      connect(token);
    });
    $("forget").addEventListener("click", () => {
      if (source) source.close();
      localStorage.removeItem(TOKEN);
      localStorage.removeItem(LAST);
      $("token").value = "";
      $("messages").replaceChildren();
      status("Not connected.");
    });
    const saved = localStorage.getItem(TOKEN);
    if (saved) {
      $("token").value = saved;
      connect(saved);
    }
  });
})();
