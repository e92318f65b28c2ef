; Hearth's Windows installer: a per-user install of the PyInstaller onedir build
; (dist\hearth), no administrator rights, a Start menu entry (and a desktop shortcut, a
; box on the last page) that open the window, and an uninstaller that Windows' "Installed
; apps" lists.
;
; The build holds two programs over one _internal folder: hearthw.exe opens the window
; without a console (the shortcuts start it), hearth.exe is the command line.
;
;   makensis /DVERSION=0.1.0 /DEDITION=full /DSRCDIR=C:\...\dist\hearth
;            /DOUTFILE=C:\...\Hearth-0.1.0-windows-x64-full-setup.exe packaging\windows\hearth.nsi
;
; /DICON=...\hearth.ico replaces the installer's icon (default: resources\hearth.ico, made
; from hearth.svg by scripts/make_icons.py; the shortcuts show the one inside
; hearthw.exe, from the same file). /DSIGN_CMD="..." signs the uninstaller and the finished
; installer with that command (the file's path is appended), see build_installer.ps1.
; Uninstalling removes the program only: chats, models and settings live in the user's data
; folder (app/paths.py) and stay.

Unicode true
ManifestDPIAware true
SetCompressor /SOLID lzma

!include "MUI2.nsh"
!include "FileFunc.nsh"

!ifndef VERSION
  !error "Pass the version: /DVERSION=x.y.z"
!endif
!ifndef SRCDIR
  !error "Pass the PyInstaller onedir folder: /DSRCDIR=...\dist\hearth"
!endif
!ifndef EDITION
  !define EDITION "full"
!endif
!ifndef OUTFILE
  !define OUTFILE "Hearth-${VERSION}-windows-x64-${EDITION}-setup.exe"
!endif
; Windows wants four numbers in a file version; a pre-release passes its own /DVIVERSION.
!ifndef VIVERSION
  !define VIVERSION "${VERSION}.0"
!endif

!ifndef ICON
  !define ICON "${__FILEDIR__}\..\..\resources\hearth.ico"
!endif

!define APP_NAME "Hearth"
; The window, without a console: what the shortcuts and "Open Hearth" start.
!define APP_EXE "hearthw.exe"
; The command line (a console program): installed beside it, started by no shortcut.
!define CLI_EXE "hearth.exe"
!define UNINSTALLER "Uninstall Hearth.exe"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Hearth"

!ifdef SIGN_CMD
  !finalize '${SIGN_CMD} "%1"' = 0
  !uninstfinalize '${SIGN_CMD} "%1"' = 0
!endif

Name "${APP_NAME}"
OutFile "${OUTFILE}"
; Per-user: no UAC prompt, the program goes under the user's own profile.
RequestExecutionLevel user
InstallDir "$LOCALAPPDATA\Programs\Hearth"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
BrandingText "${APP_NAME} ${VERSION} (${EDITION} edition)"

VIProductVersion "${VIVERSION}"
VIAddVersionKey "ProductName" "${APP_NAME}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${APP_NAME} installer (${EDITION} edition)"
VIAddVersionKey "LegalCopyright" "Apache License 2.0"

!define MUI_ABORTWARNING
!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_FINISHPAGE_RUN "$INSTDIR\${APP_EXE}"
!define MUI_FINISHPAGE_RUN_TEXT "Open Hearth"
; MUI2's "show readme" box, put to another use: the desktop shortcut, for whoever wants one.
!define MUI_FINISHPAGE_SHOWREADME ""
!define MUI_FINISHPAGE_SHOWREADME_TEXT "Create a desktop shortcut"
!define MUI_FINISHPAGE_SHOWREADME_FUNCTION CreateDesktopShortcut
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Function .onInit
  SetShellVarContext current
FunctionEnd

Function un.onInit
  SetShellVarContext current
FunctionEnd

Function CreateDesktopShortcut
  CreateShortcut "$DESKTOP\${APP_NAME}.lnk" "$INSTDIR\${APP_EXE}" "" "$INSTDIR\${APP_EXE}" 0
FunctionEnd

Section "Hearth" SecMain
  SectionIn RO
  SetOutPath "$INSTDIR"
  ; An update replaces the program's files: nothing from the previous version lingers.
  RMDir /r "$INSTDIR\_internal"
  File /r "${SRCDIR}\*.*"
  WriteUninstaller "$INSTDIR\${UNINSTALLER}"

  CreateShortcut "$SMPROGRAMS\${APP_NAME}.lnk" "$INSTDIR\${APP_EXE}" "" "$INSTDIR\${APP_EXE}" 0

  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP_NAME}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "The Hearth developers"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${APP_EXE}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\${UNINSTALLER}"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\${UNINSTALLER}" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
  ; "Installed apps" shows this size (KiB).
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "EstimatedSize" $0
SectionEnd

Section "Uninstall"
  Delete "$SMPROGRAMS\${APP_NAME}.lnk"
  Delete "$DESKTOP\${APP_NAME}.lnk"
  ; Only what the installer put there (PyInstaller's onedir layout: the two executables
  ; and _internal), so a folder the user chose by hand keeps anything else it holds.
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\${APP_EXE}"
  Delete "$INSTDIR\${CLI_EXE}"
  Delete "$INSTDIR\${UNINSTALLER}"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd
