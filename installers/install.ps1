# Install qwendesk for this user on Windows, enable start at login and start the tray.
#
#   irm https://raw.githubusercontent.com/qwendesk/qwendesk/main/installers/install.ps1 | iex
#   powershell -ExecutionPolicy Bypass -File installers\install.ps1 -NoStart
#
# Same environment variables as install.sh: QWENDESK_SOURCE, QWENDESK_VENV (default:
# %LOCALAPPDATA%\qwendesk-venv), QWENDESK_PYTHON (default: py -3 or python), QWENDESK_PIP_ARGS,
# QWENDESK_VENV_ARGS. The `qwendesk` command is added to the user's PATH (the venv's Scripts folder).
param([switch]$NoAutostart, [switch]$NoStart)
$ErrorActionPreference = "Stop"

function Say($msg) { Write-Host "qwendesk: $msg" }
function Split-Args($s) { if ($s) { @($s -split '\s+' | Where-Object { $_ }) } else { @() } }

$venv = if ($env:QWENDESK_VENV) { $env:QWENDESK_VENV } else { Join-Path $env:LOCALAPPDATA "qwendesk-venv" }
$src = if ($env:QWENDESK_SOURCE) { $env:QWENDESK_SOURCE } else { "qwendesk" }
if (Test-Path -PathType Container $src) { $spec = "$((Resolve-Path $src).Path)[tray]" }
elseif ($src -eq "qwendesk") { $spec = "qwendesk[tray]" }
else { $spec = $src }

$python = Join-Path $venv "Scripts\python.exe"
if (-not (Test-Path $python)) {
    if ($env:QWENDESK_PYTHON) { $base = @($env:QWENDESK_PYTHON) }
    elseif (Get-Command py -ErrorAction SilentlyContinue) { $base = @("py", "-3") }
    elseif (Get-Command python -ErrorAction SilentlyContinue) { $base = @("python") }
    else { throw "Python 3.10 or newer is needed: install it from python.org (tick 'Add to PATH')." }
    $exe, $rest = $base
    & $exe @rest -c "import sys; sys.exit(sys.version_info < (3, 10))"
    if ($LASTEXITCODE -ne 0) { throw "$base is older than Python 3.10; set QWENDESK_PYTHON to a newer one." }
    Say "creating a virtual environment in $venv"
    & $exe @rest -m venv @(Split-Args $env:QWENDESK_VENV_ARGS) $venv
    if ($LASTEXITCODE -ne 0) { throw "could not create $venv" }
}
Say "installing $spec (this downloads Xinference and llama.cpp; it takes a few minutes)"
& $python -m pip install --quiet --upgrade @(Split-Args $env:QWENDESK_PIP_ARGS) $spec
if ($LASTEXITCODE -ne 0) { throw "pip could not install $spec" }

$scripts = Join-Path $venv "Scripts"
$qwendesk = Join-Path $scripts "qwendesk.exe"
& $qwendesk --version | Out-Null
if ($LASTEXITCODE -ne 0) { throw "the installed qwendesk command does not run" }

# Put the venv's Scripts folder on the user's PATH (registry, so new terminals see it).
$userPath = [Environment]::GetEnvironmentVariable("Path", "User")
if (-not (($userPath -split ';') -contains $scripts)) {
    [Environment]::SetEnvironmentVariable("Path", (@($userPath, $scripts) | Where-Object { $_ }) -join ';', "User")
    Say "added $scripts to your PATH (open a new terminal to use qwendesk)"
}

if (-not $NoAutostart) {
    $now = if ($NoStart) { @() } else { @("--now") }
    & $qwendesk autostart enable @now
} elseif (-not $NoStart) {
    Start-Process -FilePath (Join-Path $scripts "pythonw.exe") -ArgumentList "-m", "qwendesk.daemon", "tray" -WindowStyle Hidden
    Say "started the tray"
}
Say "installed. Put .gguf models in $(& $qwendesk path models) or run 'qwendesk pull'."
