// The arena: one message to two anonymous bots, both replies streamed side by side, a vote, then
// their names. The battle can go on for more turns, before the vote or after it. Stop (or Escape)
// stops both replies; each side keeps what it had produced, marked as stopped.
"use strict";
const $ = (id) => document.getElementById(id);
const arena = {battle: null, busy: false, controller: null};

function sideBox(side) { return $(`messages-${side}`); }

function renderBattle() {
  const battle = arena.battle;
  for (const side of ["a", "b"]) {
    const box = sideBox(side);
    box.replaceChildren();
    for (const m of battle ? battle[side].messages : []) {
      if (m.role === "user") box.append(el("div", {class: "msg user", text: m.text}));
      else {
        const body = el("div", {class: "body"});
        setBody(body, m.text, m.html);
        const stopped = m.finish_reason === "cancelled" &&
          el("div", {class: "note", text: `(${T.cancelled})`});
        box.append(el("div", {class: "msg assistant"}, body, stopped));
      }
    }
    const name = battle && battle[side].name;
    $(`name-${side}`).textContent = name ? `${T[side]}: ${name}` : T[side];
  }
  const answered = battle && battle.a.messages.some((m) => m.role === "user");
  $("votes").hidden = !battle || !!battle.vote || !answered || arena.busy;
  const labels = {a: T.a_better, b: T.b_better, tie: T.tie, bad: T.both_bad};
  $("verdict").textContent = battle && battle.vote ? `${T.voted}: ${labels[battle.vote]}` : "";
}

async function newBattle() {
  showError(null);
  arena.battle = await api("POST", "/api/arena/battles");
  renderBattle();
  $("input").focus();
}

async function send(event) {
  event.preventDefault();
  if (arena.busy) return;
  const text = $("input").value.trim();
  if (!text) return;
  showError(null);
  try {
    if (!arena.battle) await newBattle();
  } catch (error) { showError(error); return; }
  $("input").value = "";
  const bodies = {};
  for (const side of ["a", "b"]) {
    sideBox(side).append(el("div", {class: "msg user", text}));
    bodies[side] = el("div", {class: "body"});
    sideBox(side).append(el("div", {class: "msg assistant streaming"}, bodies[side]));
  }
  const shown = {a: "", b: ""};
  const before = {};
  for (const side of ["a", "b"]) {
    const known = arena.battle[side].messages;
    before[side] = known.length ? known[known.length - 1].id : null;
  }
  let stopped = false;
  arena.busy = true;
  arena.controller = new AbortController();
  $("send").disabled = true;
  $("stop").hidden = false;
  renderVotesHidden();
  try {
    await sse(`/api/arena/battles/${arena.battle.id}/messages`, {text}, (name, data) => {
      if (name === "piece") {
        shown[data.side] += data.text;
        bodies[data.side].textContent = shown[data.side];
      } else if (name === "error") {
        showError(new Error(data.error.message));
      }
    }, arena.controller.signal);
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else showError(error);
  }
  arena.controller = null;
  $("stop").hidden = true;
  await reload(stopped, shown, before);
  arena.busy = false;
  $("send").disabled = false;
  renderBattle();
  $("input").focus();
}

// The stored battle. A stopped reply is committed once its side's decoding notices the stop,
// which may take it a moment: until each side that had shown something has a reply newer than
// `before` (its last message before this turn), the page keeps what it shows. A reply stopped
// before its first piece is not stored at all.
async function reload(stopped, shown, before) {
  const settled = (battle, side) => {
    if (!stopped || !shown[side]) return true;
    const messages = battle[side].messages;
    const last = messages[messages.length - 1];
    return last && last.role === "assistant" && last.id !== before[side];
  };
  for (let attempt = 0; attempt < 150; attempt++) {  // up to 30 s
    try {
      const battle = await api("GET", `/api/arena/battles/${arena.battle.id}`);
      if (settled(battle, "a") && settled(battle, "b")) { arena.battle = battle; return; }
    } catch (error) { showError(error); return; }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function stop() {
  if (arena.controller) arena.controller.abort();
}

function renderVotesHidden() { $("votes").hidden = true; }

async function vote(choice) {
  showError(null);
  try {
    arena.battle = await api("POST", `/api/arena/battles/${arena.battle.id}/vote`, {vote: choice});
    renderBattle();
    $("verdict").focus?.();
  } catch (error) { showError(error); }
}

$("composer").addEventListener("submit", send);
$("stop").addEventListener("click", stop);
document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });
sendOnEnter($("input"), $("composer"));
$("new").addEventListener("click", () => { arena.battle = null; renderBattle(); newBattle().catch(showError); });
for (const button of document.querySelectorAll("[data-vote]")) {
  button.addEventListener("click", () => vote(button.dataset.vote));
}
renderBattle();
