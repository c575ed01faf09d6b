// trapd setup page, Deployment section: the running deployment (from health), the setup
// and pickup photos, ending it, starting the next. Uses $, api, show, showWrite,
// thumbnails, loadConfig and refreshHealth from app.js.
"use strict";

const deployment = { current: null, ended: false, offered: false };

function renderDeployment(h) {
  deployment.current = h.deployment_id;
  deployment.ended = Boolean(h.deployment_end_kind);
  const rows = [["running", h.deployment_id], ["since", h.deployment_start || "not recorded on this card yet"]];
  if (h.deployment_end_kind) rows.push(["ended", `${h.deployment_end} (${h.deployment_end_kind})`]);
  const dl = $("deployment-now");
  dl.replaceChildren();
  for (const [name, value] of rows) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value;
    dd.dataset.field = name;
    if (name === "ended") dd.className = "bad";
    dl.append(dt, dd);
  }
  $("end-deployment").disabled = deployment.ended;
  if (!deployment.offered) offerNextId();
}

async function offerNextId() {
  deployment.offered = true;
  try {
    const reply = await api("/api/deployment");
    if (!$("new-deployment").value) $("new-deployment").value = reply.next_id;
  } catch (e) { deployment.offered = false; }
}

function technician() {
  return $("technician").value.trim() || "setup page";
}

function showPhoto(photo) {
  const box = $("photo-result");
  const thumbs = thumbnails([photo.file]);          // app.js: quarter-size copies of stored photos
  const img = thumbs.firstChild;
  img.loading = "eager";
  const text = document.createElement("p");
  text.textContent = `${photo.kind} photo stored as event ${photo.event_id}: ${photo.path}`;
  const row = document.createElement("div");
  row.className = "photo";
  row.dataset.eventId = photo.event_id;
  row.append(img, text);
  box.className = "status ok";
  box.replaceChildren(row);
}

async function takePhoto(kind) {
  show("photo-result", `taking the ${kind} photo…`);
  const photo = await api("/api/deployment/photo", { kind, confirmed_by: technician() });
  showPhoto(photo);
  return photo;
}

function busy(on) {
  for (const id of ["setup-photo", "end-deployment", "start-deployment"]) $(id).disabled = on;
  if (!on) $("end-deployment").disabled = deployment.ended;
}

async function takeSetupPhoto() {
  busy(true);
  try { await takePhoto("setup"); }
  catch (e) { show("photo-result", e.message, false); }
  finally { busy(false); refreshHealth(); }
}

async function endDeployment() {
  const id = deployment.current;
  if (!confirm(`End deployment ${id} now?\nA pickup photo is taken first. The card records ` +
               "now as the deployment's end; exports give it as such.")) return;
  busy(true);
  try {
    try { await takePhoto("pickup"); }
    catch (e) {
      show("photo-result", e.message, false);
      if (!confirm(`The pickup photo failed (${e.message}).\nEnd deployment ${id} without it?`)) return;
    }
    const reply = await api("/api/deployment/end", {});
    show("end-result", reply.message, reply.ok);
  } catch (e) { show("end-result", "not ended: " + e.message, false); }
  finally { busy(false); refreshHealth(); }
}

async function startDeployment() {
  const id = $("new-deployment").value.trim();
  if (!id) { show("deployment-result", "a new deployment id is needed", false); return; }
  if (!confirm(`Start deployment ${id}?\n${deployment.current} ends on the card ` +
               "(if it has not ended yet) when the trap reloads.")) return;
  busy(true);
  try {
    const reply = await api("/api/deployment/start", { deployment_id: id });
    showWrite("deployment-result", reply);
    if (reply.ok && reply.reload && reply.reload.ok) {
      const p = document.createElement("p");
      p.textContent = `Deployment ${id} started (was ${deployment.current}).`;
      $("deployment-result").prepend(p);
      $("new-deployment").value = "";
      deployment.offered = false;
    }
  } catch (e) { show("deployment-result", e.message, false); }
  finally { busy(false); loadConfig(); refreshHealth(); }
}

window.addEventListener("DOMContentLoaded", () => {
  $("setup-photo").onclick = takeSetupPhoto;
  $("end-deployment").onclick = endDeployment;
  $("start-deployment").onclick = startDeployment;
});
