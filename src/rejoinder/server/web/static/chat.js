// The chat page: choose a bot and its options, chat with streamed replies, stop, regenerate and
// move between versions, rate replies, reopen past conversations, see what the bot tracks.
"use strict";
const $ = (id) => document.getElementById(id);
const state = {bots: [], conversation: null, controller: null, busy: false};

// -- bots and their options ------------------------------------------------------------------------
async function loadBots() {
  const {data} = await api("GET", "/api/bots");
  state.bots = data;
  const select = $("bot");
  select.replaceChildren(...data.map((b) => el("option", {value: b.name, text: b.name, title: b.description})));
  const wanted = new URLSearchParams(location.search).get("bot");
  if (wanted && data.some((b) => b.name === wanted)) select.value = wanted;
  showBot();
}

function currentBot() {
  return state.bots.find((b) => b.name === $("bot").value);
}

function showBot() {
  const bot = currentBot();
  if (!bot) return;
  $("bot-status").textContent = bot.ready ? bot.description : `${bot.name} ${bot.error ? T.error + ": " + bot.error : T.preparing}`;
  const box = $("options");
  box.replaceChildren();
  for (const option of bot.options.filter((o) => o.client)) {
    const id = `option-${option.name}`;
    let input;
    if (option.kind === "bool") {
      input = el("input", {type: "checkbox", id, "data-option": option.name, checked: option.default === true});
    } else if (option.choices && option.kind === "choice") {
      input = el("select", {id, "data-option": option.name},
        ...option.choices.map((c) => el("option", {value: c, text: c, selected: c === option.default})));
    } else {
      const numeric = option.kind === "int" || option.kind === "float";
      input = el("input", {type: numeric ? "number" : "text", id, "data-option": option.name,
        step: option.kind === "float" ? "any" : undefined, value: option.default ?? ""});
    }
    input.dataset.kind = option.kind;
    input.dataset.default = JSON.stringify(option.default ?? null);
    box.append(el("label", {for: id, title: option.help, text: option.name}), input);
  }
  $("options-box").hidden = !box.children.length;
}

function chosenOptions() {
  const out = {};
  for (const input of $("options").querySelectorAll("[data-option]")) {
    const kind = input.dataset.kind;
    let value = input.type === "checkbox" ? input.checked : input.value;
    if (kind === "int") value = value === "" ? null : parseInt(value, 10);
    if (kind === "float") value = value === "" ? null : parseFloat(value);
    if (JSON.stringify(value) !== input.dataset.default && value !== null) out[input.dataset.option] = value;
  }
  return out;
}

// -- conversations ---------------------------------------------------------------------------------
async function loadHistory() {
  const {data} = await api("GET", "/api/conversations?limit=50");
  const list = $("history");
  list.replaceChildren();
  if (!data.length) list.append(el("li", {class: "muted", text: T.empty}));
  for (const c of data) {
    const when = new Date(c.updated_at).toLocaleString(document.documentElement.lang);
    const button = el("button", {type: "button", "aria-current": state.conversation && c.id === state.conversation.id ? "true" : null,
      onclick: () => openConversation(c.id)}, c.bot, el("small", {text: `${when} · ${c.messages}`}));
    list.append(el("li", {}, button));
  }
}

async function openConversation(id) {
  showError(null);
  state.conversation = await api("GET", `/api/conversations/${id}`);
  if (state.bots.some((b) => b.name === state.conversation.bot)) $("bot").value = state.conversation.bot;
  render();
  loadHistory();
}

async function newConversation() {
  showError(null);
  const conversation = await api("POST", "/api/conversations", {bot: $("bot").value, options: chosenOptions()});
  state.conversation = conversation;
  render();
  loadHistory();
  return conversation;
}

// -- rendering -------------------------------------------------------------------------------------
function render() {
  const box = $("messages");
  box.replaceChildren();
  const messages = state.conversation ? state.conversation.messages : [];
  messages.forEach((m, index) => box.append(messageNode(m, index === messages.length - 1)));
  box.scrollTop = box.scrollHeight;
  const last = [...messages].reverse().find((m) => m.role === "assistant");
  showPanel(last ? last.meta : null, state.conversation ? state.conversation.panel : null);
}

function messageNode(m, isLast) {
  if (m.role === "user") return el("div", {class: "msg user", "data-id": m.id, text: m.text});
  const body = el("div", {class: "body"});
  setBody(body, m.text, m.html);
  const node = el("div", {class: "msg assistant", "data-id": m.id}, body);
  if (m.meta && m.meta.finish_reason === "cancelled") node.append(el("div", {class: "note", text: `(${T.cancelled})`}));
  if (m.parent_id) node.append(actions(m, isLast));
  return node;
}

function actions(m, isLast) {
  const row = el("div", {class: "actions"});
  const thumb = (score, cls, label, glyph) => el("button", {type: "button", class: cls, "aria-label": label,
    title: label, "aria-pressed": "false", text: glyph, onclick: (event) => rate(m, score, event.currentTarget, row)});
  row.append(thumb(1, "good", T.good, "▲"), thumb(-1, "bad", T.bad, "▼"));
  if (m.siblings && m.siblings.length > 1) {
    const i = m.sibling_index;
    row.append(
      el("button", {type: "button", class: "previous", "aria-label": T.previous, title: T.previous, text: "‹",
        disabled: i === 0, onclick: () => switchTo(m.siblings[i - 1])}),
      el("span", {class: "version", text: `${i + 1}/${m.siblings.length}`}),
      el("button", {type: "button", class: "next", "aria-label": T.next, title: T.next, text: "›",
        disabled: i === m.siblings.length - 1, onclick: () => switchTo(m.siblings[i + 1])}));
  }
  if (isLast) row.append(el("button", {type: "button", class: "regenerate", text: T.regenerate, onclick: regenerate}));
  return row;
}

async function rate(m, score, button, row) {
  showError(null);
  try {
    await api("POST", `/api/messages/${m.id}/feedback`, {rating: score});
    row.querySelectorAll(".good, .bad").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
    if (!row.querySelector(".comment")) {
      const input = el("textarea", {rows: 1, "aria-label": T.comment, placeholder: T.comment, maxlength: 4000});
      const form = el("form", {class: "comment"}, input, el("button", {type: "submit", text: T.save}));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        try {
          await api("POST", `/api/messages/${m.id}/feedback`, {comment: text});
          form.replaceWith(el("span", {class: "note thanks", role: "status", text: T.thanks}));
        } catch (error) { showError(error); }
      });
      row.append(form);
      input.focus();
    }
  } catch (error) { showError(error); }
}

async function switchTo(messageId) {
  showError(null);
  try {
    state.conversation = await api("POST", `/api/conversations/${state.conversation.id}/switch`, {message_id: messageId});
    render();
  } catch (error) { showError(error); }
}

// -- the side panel --------------------------------------------------------------------------------
function dl(pairs) {
  const list = el("dl");
  for (const [key, value] of pairs) {
    if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) continue;
    list.append(el("dt", {text: key}), el("dd", {text: Array.isArray(value) ? value.join(", ") : String(value)}));
  }
  return list;
}

function showPanel(meta, panel) {
  const box = $("panel");
  box.replaceChildren();
  if (panel && panel.kind === "frame" && panel.frame) {
    box.append(el("h3", {text: `${T.frame}: ${panel.title}`}), dl([["phase", panel.phase], [T.asked, panel.asked],
      [T.missing, panel.missing]]));
    const table = el("table", {id: "slots"}, el("tr", {}, el("th", {text: "slot"}), el("th", {text: "value"})));
    for (const slot of panel.slots) {
      const value = slot.filled ? String(slot.value) : slot.default ? `${slot.value} (default)` : "—";
      table.append(el("tr", {class: slot.filled ? "slot-filled" : slot.required ? "slot-missing" : "",
        "data-slot": slot.name}, el("td", {text: slot.name + (slot.required ? " *" : "")}), el("td", {text: value})));
    }
    box.append(table);
    if (panel.confirmation) box.append(el("p", {class: "confirmation"}, el("strong", {text: `${T.confirm}: `}), panel.confirmation));
  }
  if (meta) {
    const speed = meta.tokens && meta.seconds ? `${(meta.tokens / meta.seconds).toFixed(1)} ${T.tokens_s}` : null;
    const nlu = meta.nlu || {};
    box.append(dl([
      [T.rule, meta.rules], [T.keyword, meta.keystack], [T.memory, meta.memorised], ["source", meta.source],
      [T.matched, meta.matched], [T.confidence, meta.confidence], ["corpus", meta.corpus],
      [T.model, meta.model], [T.backend, meta.backend], [T.speed, speed],
      [T.first_piece, meta.first_piece_s != null ? `${meta.first_piece_s} s` : null],
      [T.intent, nlu.intent], [T.action, meta.action], [T.error, meta.error],
    ]));
  }
  if (!box.children.length) box.append(el("p", {class: "muted", text: T.nothing}));
}

// -- sending, stopping, regenerating ---------------------------------------------------------------
function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  $("stop").hidden = !busy;
  for (const b of document.querySelectorAll(".regenerate")) b.disabled = busy;
}

async function streamInto(path, body) {
  const known = state.conversation.messages;
  const before = known.length ? known[known.length - 1].id : null;
  const node = el("div", {class: "msg assistant streaming"}, el("div", {class: "body"}));
  $("messages").append(node);
  const text = node.querySelector(".body");
  let shown = "";
  let failed = null;
  let stopped = false;
  state.controller = new AbortController();
  setBusy(true);
  $("stop").focus();
  try {
    await sse(path, body, (name, data) => {
      if (name === "piece") {
        shown += data.text;
        text.textContent = shown;
        $("messages").scrollTop = $("messages").scrollHeight;
      } else if (name === "reply") {
        showPanel(data.message.meta, data.panel);
      } else if (name === "error") {
        failed = new Error(data.error.message);
      }
    }, state.controller.signal);
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else failed = error;
  } finally {
    state.controller = null;
    setBusy(false);
  }
  node.classList.remove("streaming");
  if (stopped) node.append(el("div", {class: "note", text: `(${T.cancelled})`}));
  if (failed) showError(failed);
  await refresh(stopped && shown ? before : undefined);
  $("input").focus();
}

async function refresh(before) {
  // The stored conversation: ids, versions and a stopped reply as it was kept. A stopped reply is
  // committed once the server's decoding notices the stop, which may take it a moment: until a
  // reply newer than `before` (the last message before this turn) is stored, the page keeps what
  // it shows. A reply stopped before its first piece is not stored at all.
  const id = state.conversation.id;
  for (let attempt = 0; attempt < 150; attempt++) {  // up to 30 s
    try {
      const conversation = await api("GET", `/api/conversations/${id}`);
      const last = conversation.messages[conversation.messages.length - 1];
      if (before === undefined || (last && last.role === "assistant" && last.id !== before)) {
        state.conversation = conversation;
        render();
        break;
      }
    } catch (error) { showError(error); break; }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  loadHistory();
}

async function send(event) {
  event.preventDefault();
  if (state.busy) return;
  const input = $("input");
  const text = input.value.trim();
  if (!text) return;
  showError(null);
  try {
    if (!state.conversation || state.conversation.bot !== $("bot").value) await newConversation();
  } catch (error) { showError(error); return; }
  input.value = "";
  $("messages").append(el("div", {class: "msg user", text}));
  await streamInto(`/api/conversations/${state.conversation.id}/messages`, {text, stream: true});
}

async function regenerate() {
  if (state.busy || !state.conversation) return;
  showError(null);
  const box = $("messages");
  const last = box.lastElementChild;
  if (last && last.classList.contains("assistant")) last.remove();
  await streamInto(`/api/conversations/${state.conversation.id}/regenerate`, {stream: true});
}

function stop() {
  if (state.controller) state.controller.abort();
}

// -- start -----------------------------------------------------------------------------------------
$("composer").addEventListener("submit", send);
sendOnEnter($("input"), $("composer"));
$("stop").addEventListener("click", stop);
document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });
$("new").addEventListener("click", () => newConversation().catch(showError));
$("bot").addEventListener("change", () => { showBot(); state.conversation = null; render(); });
loadBots().then(loadHistory).catch(showError);
