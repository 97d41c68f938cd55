// A virtual Matter door lock for lockbridge's tests: matter.js's own Door Lock server with users,
// PIN credentials and (optionally) year-day schedules, commissionable over IP.
//
// Usage: node virtual-lock.mjs STORAGE_DIR PORT INTERFACE [--no-schedules]
// Prints {"ready": true, "pairing": "<manual code>"} once it listens, then answers one JSON
// command per stdin line with one JSON line on stdout (the tests' window into the lock):
//   {"op": "reset"}                          every user, PIN and schedule gone; locked
//   {"op": "truth"}                          -> {"pins": {credentialIndex: pin}, "users": [...]}
//   {"op": "keypad_set", "slot", "user", "pin"} a code added at the keypad (LockUserChange, source 3)
//   {"op": "keypad_unlock", "pin"}           an unlock at the keypad (LockOperation with the credential)
//   {"op": "foreign", "slot", "user", "pin", "fabric"} a code some fabric made, put in the
//                                            lock's store directly (no event)
import { Bytes, Environment, ServerNode, VendorId } from "@matter/main";
import { DoorLockServer } from "@matter/main/behaviors/door-lock";
import { DoorLock } from "@matter/main/clusters/door-lock";
import { DoorLockDevice } from "@matter/main/devices/door-lock";
import { createInterface } from "node:readline";

const [storage, port, iface, ...flags] = process.argv.slice(2);
const schedules = !flags.includes("--no-schedules");

const env = Environment.default;
env.vars.set("storage.path", storage);
env.vars.set("mdns.networkInterface", iface);
env.vars.set("log.level", "warn");

const features = ["User", "PinCredential"];
if (schedules) features.push("YearDayAccessSchedules", "WeekDayAccessSchedules");
const Base = DoorLockServer.with(...features);

const KEYPAD = DoorLock.OperationSource.Keypad;
const PIN = DoorLock.CredentialType.Pin;

class VirtualLockServer extends Base {
    truth() {
        const auth = this.auth;
        const pins = {};
        for (const cred of auth.credentials) {
            if (cred.credentialType !== PIN) continue;
            pins[cred.credentialIndex] = new TextDecoder().decode(auth.decrypt(cred.credentialData));
        }
        const users = auth.users.map(u => ({
            userIndex: u.userIndex, creatorFabricIndex: u.creatorFabricIndex,
            credentials: u.credentials.map(c => c.credentialIndex),
        }));
        const yearDay = (this.state.yearDaySchedules ?? []).map(s => ({ ...s }));
        return { pins, users, yearDay };
    }

    // A code someone adds (or changes) at the keypad, or another fabric's app: as the lock stores it.
    putCode(slot, userIndex, pin, fabric, source) {
        const auth = this.auth;
        const data = Bytes.fromString(pin);
        const existing = auth.findCredential(PIN, slot);
        if (existing) {
            auth.updateCredentialData(PIN, slot, data, fabric);
        } else {
            auth.addCredential(PIN, slot, data, fabric);
            if (!auth.findUser(userIndex)) {
                auth.addUser({
                    userIndex, userName: "", userUniqueId: null,
                    userStatus: DoorLock.UserStatus.OccupiedEnabled,
                    userType: DoorLock.UserType.UnrestrictedUser,
                    credentialRule: DoorLock.CredentialRule.Single,
                    credentials: [{ credentialType: PIN, credentialIndex: slot }],
                    creatorFabricIndex: fabric, lastModifiedFabricIndex: fabric,
                });
            }
        }
        if (source !== null) {
            this.events.lockUserChange.emit({
                lockDataType: DoorLock.LockDataType.Pin,
                dataOperationType: existing ? DoorLock.DataOperationType.Modify : DoorLock.DataOperationType.Add,
                operationSource: source, userIndex, fabricIndex: null, sourceNode: null, dataIndex: slot,
            }, this.context);
        }
    }

    // Factory-fresh codes for the next test (no events: nobody changed anything at the door).
    reset() {
        this.state.users = [];
        this.state.credentials = [];
        this.state.yearDaySchedules = [];
        this.state.weekDaySchedules = [];
        this.state.lockState = DoorLock.LockState.Locked;
    }

    keypadUnlock(pin) {
        const auth = this.auth;
        const data = Bytes.fromString(pin);
        for (const cred of auth.credentials) {
            if (cred.credentialType !== PIN) continue;
            if (!Bytes.areEqual(auth.decrypt(cred.credentialData), data)) continue;
            this.state.lockState = DoorLock.LockState.Unlocked;
            this.events.lockOperation.emit({
                lockOperationType: DoorLock.LockOperationType.Unlock, operationSource: KEYPAD,
                userIndex: auth.findUserIndexForCredential(PIN, cred.credentialIndex),
                fabricIndex: null, sourceNode: null,
                credentials: [{ credentialType: PIN, credentialIndex: cred.credentialIndex }],
            }, this.context);
            return true;
        }
        this.events.lockOperationError.emit({
            lockOperationType: DoorLock.LockOperationType.Unlock, operationSource: KEYPAD,
            operationError: DoorLock.OperationError.InvalidCredential, userIndex: null,
            fabricIndex: null, sourceNode: null, credentials: null,
        }, this.context);
        return false;
    }
}

const doorLock = {
    lockState: DoorLock.LockState.Locked,
    lockType: DoorLock.LockType.DeadBolt,
    actuatorEnabled: true,
    operatingMode: DoorLock.OperatingMode.Normal,
    numberOfTotalUsersSupported: 10,
    numberOfPinUsersSupported: 15,
    numberOfCredentialsSupportedPerUser: 2,
    maxPinCodeLength: 8,
    minPinCodeLength: 4,
    wrongCodeEntryLimit: 10,
    userCodeTemporaryDisableTime: 10,
};
if (schedules) {
    doorLock.numberOfYearDaySchedulesSupportedPerUser = 2;
    doorLock.numberOfWeekDaySchedulesSupportedPerUser = 2;
}

const node = await ServerNode.create({
    id: "virtual-lock",
    network: { port: Number(port) },
    commissioning: { passcode: 20202021, discriminator: 3840 },
    productDescription: { name: "lockbridge virtual lock", deviceType: DoorLockDevice.deviceType },
    basicInformation: {
        vendorName: "lockbridge tests", vendorId: VendorId(0xfff1), nodeLabel: "Front door",
        productName: "Virtual lock", productLabel: "Virtual lock", productId: 0x8000,
        serialNumber: "lockbridge-virtual-1", uniqueId: "lockbridge-virtual-1",
    },
});
const endpoint = await node.add(DoorLockDevice.with(VirtualLockServer), { id: "lock", doorLock });
await node.start();

const out = obj => process.stdout.write(JSON.stringify(obj) + "\n");
out({ ready: true, pairing: node.state.commissioning.pairingCodes.manualPairingCode,
      commissioned: node.state.commissioning.commissioned });

const act = fn => endpoint.act(agent => fn(agent.get(VirtualLockServer)));
const handlers = {
    truth: () => act(lock => lock.truth()),
    reset: () => act(lock => { lock.reset(); return {}; }),
    keypad_set: m => act(lock => { lock.putCode(m.slot, m.user, m.pin, 0, KEYPAD); return {}; }),
    foreign: m => act(lock => { lock.putCode(m.slot, m.user, m.pin, m.fabric, null); return {}; }),
    keypad_unlock: m => act(lock => ({ matched: lock.keypadUnlock(m.pin) })),
};
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
    let answer;
    try {
        const msg = JSON.parse(line);
        answer = { ok: true, ...(await handlers[msg.op](msg)) };
    } catch (error) {
        answer = { ok: false, error: String(error) };
    }
    out(answer);
}
await node.close();
process.exit(0);
