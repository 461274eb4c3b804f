// Validates Prometheus Operator objects against the Operator's CRD schemas.
// Reads a JSON array of objects on stdin; prints one line per invalid object; exits 1 if any.
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = { PodMonitor, PrometheusRule, ServiceMonitor };
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let failed = 0;
for (const object of JSON.parse(Buffer.concat(chunks).toString("utf8"))) {
  const Model = models[object.kind];
  const name = `${object.kind} ${object.metadata?.name}`;
  if (!Model || object.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`${name}: not a monitoring.coreos.com/v1 kind this check knows`);
    failed += 1;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`${name}: valid`);
  } catch (error) {
    console.log(`${name}: ${error.message.split("\n")[0]}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
