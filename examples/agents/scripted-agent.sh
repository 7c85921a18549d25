#!/bin/sh
# A scripted "agent" for the demo and tests: the first attempt gets multiply wrong, the second reads
# AgentGate's feedback and fixes it. It shows the loop without a model.
set -eu
echo "iteration ${AGENTGATE_ITERATION}: working on: $(head -c 80 "$AGENTGATE_PROMPT_FILE")"
if [ "${AGENTGATE_ITERATION}" = "1" ]; then
  cat > src/math.js <<'JS'
export function add(a, b) {
  return a + b;
}

export function multiply(a, b) {
  return a + b; // first attempt: wrong
}
JS
  echo "implemented add and multiply"
else
  echo "feedback received ($(wc -c < "$AGENTGATE_FEEDBACK_FILE") bytes):"
  grep -m 3 -E 'multiply|FAIL|fail' "$AGENTGATE_FEEDBACK_FILE" || true
  sed -i 's/return a + b; \/\/ first attempt: wrong/return a * b;/' src/math.js
  echo "fixed multiply"
fi
