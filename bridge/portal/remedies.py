"""What each problem lockbridge reports means and what to do about it, for the portal's pages.

The causes and remedies follow the troubleshooting guides lockbridge is modelled on (Seam's
customer portal and access-code troubleshooting, docs/seam-model.md): the same facts, said for
a person at the door. Every error and warning code lockbridge produces has an entry; a test
holds the table to the enums in bridge/model.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Remedy:
    """Why a problem happens and what to do about it."""

    cause: str
    remedy: str


_RECONNECT = ("Check that the lock has power and is in reach of its hub or network, then "
              "wait: lockbridge retries by itself and the codes follow once it is back.")

REMEDIES: dict[str, Remedy] = {
    # -- device errors
    "device_offline": Remedy(
        "The lock does not answer: no power, flat batteries, or out of reach of its hub.",
        _RECONNECT),
    "device_disconnected": Remedy(
        "The lock's connection to lockbridge is lost.", _RECONNECT),
    "hub_disconnected": Remedy(
        "The hub or gateway between lockbridge and the lock does not answer.",
        "Check the hub's power and network; the lock's codes follow once it is back."),
    "account_disconnected": Remedy(
        "The lock maker's account no longer lets lockbridge in. The account may be connected "
        "elsewhere: most makers allow one platform at a time, so a previous integration or "
        "another customer holding it takes it away from this one.",
        "Disconnect the account from the other platform first, wait a few minutes for the "
        "maker to process it, then reconnect it here (fix the driver's credentials). Codes "
        "of stays already under way may need to be created again after a reconnection."),
    "device_removed": Remedy(
        "The lock was removed from its hub or account.",
        "Add it back to its hub or account; lockbridge picks it up again."),
    "empty_backup_access_code_pool": Remedy(
        "Every backup code of this lock is in use or none could be put on it.",
        "Check that the lock is online and has free space; the pool refills once the lock "
        "can take codes again."),
    "ttlock_lock_not_paired_to_gateway": Remedy(
        "The TTLock lock is not paired to a gateway, so codes cannot reach it remotely.",
        "Pair the lock to a TTLock gateway in the TTLock app."),
    # -- device warnings
    "many_active_backup_codes": Remedy(
        "Several backup codes have been handed out on this lock: its guests' codes keep "
        "failing.",
        "Check that the lock is online with a good connection and has free space."),
    "partial_backup_access_code_pool": Remedy(
        "The backup pool holds fewer codes than it should.",
        "Nothing to do while the lock is online: the pool refills itself. If it stays low, "
        "free space on the lock."),
    "unknown_time_zone": Remedy(
        "lockbridge does not know the lock's time zone, so windows may be off.",
        "Set the lock's or its property's time_zone in the configuration."),
    "system_clock_unsynchronized": Remedy(
        "The box's clock is not synchronised, so time-bound codes are held back.",
        "Give the box network time (NTP); codes follow once the clock is right."),
    "lock_worker_fault": Remedy(
        "lockbridge hit an unexpected fault talking to this lock and is restarting its work.",
        "Nothing to do if it clears; if it stays, send the log to support."),
    "write_only_lock": Remedy(
        "The lock cannot be read back, so lockbridge cannot confirm its codes.",
        "Check a new code at the keypad once."),
    # -- access code errors
    "failed_to_set_on_device": Remedy(
        "The lock refused the code or could not be reached.",
        "Read the message for the cause; hand the guest a backup code, then retry the code."),
    "failed_to_remove_from_device": Remedy(
        "The code could not be taken off the lock.",
        "Check with the maker's app whether the code is still on the lock: it may have been "
        "deleted by someone else."),
    "duplicate_code_on_device": Remedy(
        "Another code with the same PIN is on the lock already.",
        "Find the other code (an unmanaged code on this lock or in the maker's app): delete "
        "it or make it managed, or give this code another PIN."),
    "duplicate_code_attempt_prevented": Remedy(
        "The PIN asked for is already used by another code on this lock.",
        "Give this code another PIN."),
    "no_space_for_access_code_on_device": Remedy(
        "The lock has no free slot for another code.",
        "Delete codes that are no longer needed (through lockbridge if possible) to free "
        "slots."),
    "code_modified_external_to_seam": Remedy(
        "The code was changed or removed on the lock outside lockbridge.",
        "lockbridge puts it back by itself; to keep the other change, delete this code and "
        "create it again, or allow external modification."),
    "hubitat_device_programming_delay": Remedy(
        "The Hubitat hub is still programming the lock.",
        "Wait; check the lock's connection to the hub if it lasts."),
    "hubitat_no_free_positions_available": Remedy(
        "The lock has no free code position on the Hubitat hub.",
        "Delete codes that are no longer needed to free positions."),
    "igloohome_bridge_offline": Remedy(
        "The Igloohome bridge that reaches this lock is offline.",
        "Check the bridge's power and Wi-Fi; the code is sent again when it is back."),
    "igloohome_bridge_too_many_pending_jobs": Remedy(
        "The Igloohome bridge has too many jobs waiting for the lock.",
        "Wait for the bridge to work through them (keep the lock in the bridge's range), "
        "then retry the code."),
    "smartthings_failed_to_set_access_code": Remedy(
        "The lock told SmartThings it could not set the code (often a PIN already on it).",
        "Change the PIN or remove the clashing code at the lock, then retry."),
    "smartthings_failed_to_set_after_multiple_retries": Remedy(
        "SmartThings never confirmed the code, though it was sent several times.",
        "Check the lock's connection to its hub in the SmartThings app, then retry."),
    "smartthings_no_free_slots_available": Remedy(
        "Every code slot of the lock is taken.",
        "Delete codes that are no longer needed, at the lock or here, then retry."),
    # -- access code warnings
    "igloo_algopin_must_be_used_within_24_hours": Remedy(
        "An Igloohome algoPIN that lasts over a day works only if first used within 24 hours "
        "of its start.",
        "Tell the guest to use the code on the first day of the stay."),
    "delay_in_setting_on_device": Remedy(
        "The code is taking longer than usual to reach the lock.",
        "Check that the lock is online; hand out a backup code if the guest is waiting."),
    "delay_in_removing_from_device": Remedy(
        "The code is taking longer than usual to come off the lock.",
        "Check that the lock is online."),
    "third_party_integration_detected": Remedy(
        "Another system also manages codes on this lock.",
        "Turn off the other system's code management for this lock."),
    "code_differs_from_requested": Remedy(
        "The lock could not take the PIN asked for (its length or rules, or the PIN is in "
        "use), so another one was chosen.",
        "Give the guest the PIN shown here: it is the one on the lock."),
    "schedule_enforced_by_bridge": Remedy(
        "The lock keeps no schedules, so lockbridge puts the code on at its start and takes "
        "it off at its end.",
        "Keep the box running and connected to the lock around those times."),
    "will_not_fit_on_device": Remedy(
        "The code will not fit on the lock when it is due: it is full for that window.",
        "Delete codes that are no longer needed, or move this stay's window."),
}

UNKNOWN = Remedy("lockbridge reports this problem without a known cause.",
                 "Read the message; if it stays, send the log to support.")


def remedy_for(code: str) -> Remedy:
    """The cause and remedy of an error or warning code."""
    return REMEDIES.get(code, UNKNOWN)
