// The policy pack: `pulumi preview --policy-pack policy` (or `pulumi up --policy-pack policy`).
// The rules are in ./policies.ts, where tests call them directly.
import { PolicyPack } from "@pulumi/policy";
import { POLICIES } from "./policies";

new PolicyPack("saas-vps", { policies: POLICIES });
