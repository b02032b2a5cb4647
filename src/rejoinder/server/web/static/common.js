// Shared by the pages: the strings of the page's language, JSON calls with the CSRF token, and
// server-sent events read from a POST. Text from bots and users only ever enters the page through
// textContent, or as HTML the server rendered safely (CommonMark, raw HTML off).
"use strict";
const T = JSON.parse(document.getElementById("strings").textContent);
const CSRF = document.querySelector('meta[name="csrf-token"]').content;

function headers() {
  return {"Content-Type": "application/json", "X-CSRF-Token": CSRF};
}

async function failure(response) {
  try {
    const body = await response.json();
    return new Error((body.error && body.error.message) || response.statusText);
  } catch (_) {
    return new Error(`${response.status} ${response.statusText}`);
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {method, headers: headers(), credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body)});
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

// POST `body` to `path` and call onEvent(name, data) for each server-sent event until the stream ends.
async function sse(path, body, onEvent, signal) {
  const response = await fetch(path, {method: "POST", headers: headers(), credentials: "same-origin",
    body: JSON.stringify(body), signal});
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const blocks = buffer.split(/\r?\n\r?\n/);
    buffer = blocks.pop();
    for (const block of blocks) {
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// A bot's reply body: the server's safe HTML once the reply is complete, plain text while it streams.
function setBody(node, text, html) {
  if (html) node.innerHTML = html;  // rendered by the server with raw HTML disabled
  else node.textContent = text;
}

function showError(error) {
  const box = document.getElementById("error");
  if (!box) return;
  box.hidden = !error;
  box.textContent = error ? `${T.error}: ${error.message || error}` : "";
}

// Enter sends, Shift+Enter breaks the line.
function sendOnEnter(textarea, form) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}
