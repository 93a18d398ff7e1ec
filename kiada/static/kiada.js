// Answers the quiz in place through kiada's proxy routes and loads the next question.
// Without this script the form posts to html/answer and a result page shows instead.
"use strict";

(function () {
  const form = document.getElementById("quiz-form");
  if (!form) return;
  const answers = document.getElementById("answers");
  const verdict = document.getElementById("verdict");
  const explanation = document.getElementById("explanation");
  const next = document.getElementById("next");
  const questionId = document.getElementById("question-id");
  const questionText = document.getElementById("question-text");
  const quizPod = document.getElementById("quiz-pod");
  const quizMs = document.getElementById("quiz-ms");
  const quizHop = document.getElementById("quiz-hop");

  // The hop list explains the call that built the page; calls made from here go through the
  // proxy, so it no longer applies once one has been made.
  function showPod(response, started) {
    if (quizHop) quizHop.hidden = true;
    const pod = response.headers.get("X-Backend-Pod-Name");
    quizPod.textContent = pod || "no pod";
    // The pod's colour, as on every page (static/pods.js).
    const swatch = document.getElementById("quiz-swatch");
    if (swatch && pod && window.kiadaPodColour) {
      swatch.setAttribute("fill", window.kiadaPodColour(pod));
      swatch.parentNode.removeAttribute("hidden");
    }
    quizMs.textContent = (performance.now() - started).toFixed(1);
  }

  // Backend text: set as text, never parsed as HTML.
  function explain(text) {
    explanation.textContent = typeof text === "string" ? text : "";
    explanation.hidden = explanation.textContent === "";
  }

  function buttons() {
    return Array.from(answers.querySelectorAll("button.answer"));
  }

  async function answer(button) {
    const id = Number(questionId.value);
    const index = Number(button.value);
    buttons().forEach((b) => { b.disabled = true; });
    const started = performance.now();
    try {
      const response = await fetch("proxy/quiz/questions/" + id + "/answers", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({ questionId: id, answerIndex: index }),
      });
      const result = await response.json();
      if (!response.ok) throw new Error(result.error || response.statusText);
      showPod(response, started);
      buttons().forEach((b) => {
        if (Number(b.value) === result.correctAnswerIndex) b.classList.add("correct");
      });
      if (!result.correct) button.classList.add("incorrect");
      verdict.textContent = result.correct ? "Correct!" : "Incorrect.";
      verdict.className = "verdict " + (result.correct ? "correct" : "incorrect");
      explain(result.explanation);
    } catch (e) {
      verdict.textContent = "Could not record the answer: " + e.message;
      verdict.className = "verdict incorrect";
    }
    next.hidden = false;
    next.focus();
  }

  async function loadNext() {
    next.disabled = true;
    const started = performance.now();
    try {
      const response = await fetch("proxy/quiz/questions/random", {
        headers: { "Accept": "application/json" },
      });
      const question = await response.json();
      if (!response.ok) throw new Error(question.error || response.statusText);
      showPod(response, started);
      questionId.value = question.id;
      questionText.textContent = question.text;
      answers.replaceChildren(...question.answers.map((text, i) => {
        const b = document.createElement("button");
        b.type = "submit";
        b.name = "answerIndex";
        b.value = String(i);
        b.className = "answer";
        b.textContent = text;
        return b;
      }));
      verdict.textContent = "";
      verdict.className = "verdict";
      explain("");
      next.hidden = true;
    } catch (e) {
      verdict.textContent = "Could not load a question: " + e.message;
      verdict.className = "verdict incorrect";
    }
    next.disabled = false;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (event.submitter && event.submitter.classList.contains("answer")) answer(event.submitter);
  });
  next.addEventListener("click", loadNext);
})();
