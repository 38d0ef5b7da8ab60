// MLS (RFC 9420, through ts-mls) for ChatterBox devices: not yet wired into the message path.
export { MlsError, MlsReasons, type MlsReason } from "./errors.ts";
export { MLS_SUITE, mlsSuite } from "./suite.ts";
export { deviceCredential, parseCredential, type DeviceRef } from "./credential.ts";
export { signDeviceList, verifyDeviceList, type DeviceList, type ListedDevice } from "./device-list.ts";
export { DeviceListBook, type MemberTrust } from "./trust.ts";
export {
  decodeKeyPackage,
  isLastResort,
  makeKeyPackage,
  makeKeyPackageSupply,
  newMlsDevice,
  LAST_RESORT_EXTENSION,
  type MlsDevice,
  type OwnKeyPackage,
} from "./key-packages.ts";
export { joinDoubt, ROLES_EXTENSION, rolesOf, type GroupRoles } from "./roles.ts";
export { DeviceGroup, type Member, type Outgoing, type Received } from "./group.ts";
export { signOrigin, verifyOrigin, type GroupOrigin, type OriginPlace } from "./origin.ts";
