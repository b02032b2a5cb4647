// The arena: one message to two anonymous bots, both replies streamed side by side, a vote, then
// their names. The battle can go on for more turns, before the vote or after it.
"use strict";
const $ = (id) => document.getElementById(id);
const arena = {battle: null, busy: false};

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
        box.append(el("div", {class: "msg assistant"}, body));
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
  arena.busy = true;
  $("send").disabled = true;
  renderVotesHidden();
  try {
    await sse(`/api/arena/battles/${arena.battle.id}/messages`, {text}, (name, data) => {
      if (name === "piece") {
        shown[data.side] += data.text;
        bodies[data.side].textContent = shown[data.side];
      } else if (name === "error") {
        showError(new Error(data.error.message));
      }
    });
  } catch (error) { showError(error); }
  arena.busy = false;
  $("send").disabled = false;
  try {
    arena.battle = await api("GET", `/api/arena/battles/${arena.battle.id}`);
  } catch (error) { showError(error); }
  renderBattle();
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
sendOnEnter($("input"), $("composer"));
$("new").addEventListener("click", () => { arena.battle = null; renderBattle(); newBattle().catch(showError); });
for (const button of document.querySelectorAll("[data-vote]")) {
  button.addEventListener("click", () => vote(button.dataset.vote));
}
renderBattle();
